"""What a board says about itself, and whether it can run an artifact (checked before anything is uploaded).

The board registers `edgec.board.info` (a JSON string) in its RPC server; a client calls it first:
    {"key", "arch", "machine", "model", "cpu_features", "emulated", "cpu_count", "tvm_threads",
     "edgec", "tvm", "tvm_ffi", "numpy", "python", "system"}
CPU features use the vocabulary of the artifact's `target.cpu_features` (`edgec.targets.host_cpu_flags`:
the ISA extensions among /proc/cpuinfo's x86 flags; on aarch64 the kernel's hwcaps, which qemu-user emulates
for its core).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import edgec
from edgec.errors import EdgecError, UnsupportedError
from edgec.targets import X86_ISA_FLAGS, cpuinfo_field, host_arch, host_cpu_flags

INFO_FUNCTION = "edgec.board.info"
PEAK_RSS_FUNCTION = "edgec.board.peak_rss_mb"


def board_info(key: str) -> dict:
    """This machine as a board serving under `key` (call where TVM is already imported)."""
    import numpy
    import tvm
    import tvm_ffi

    arch, features = host_arch(), host_cpu_flags()
    if arch == "x86_64":
        features = [f for f in X86_ISA_FLAGS if f in features]  # the ones artifacts name, not all of /proc/cpuinfo
    emulated = arch != "x86_64" and bool(cpuinfo_field("flags"))  # qemu-user shows the x86 host's /proc/cpuinfo
    return {"key": key, "arch": arch, "machine": platform.machine(), "model": None if emulated else _model(),
            "cpu_features": sorted(features), "emulated": emulated, "cpu_count": os.cpu_count(),
            "tvm_threads": int(os.environ.get("TVM_NUM_THREADS", "0")) or None, "edgec": edgec.__version__,
            "tvm": tvm.__version__, "tvm_ffi": getattr(tvm_ffi, "__version__", None), "numpy": numpy.__version__,
            "python": platform.python_version(), "system": platform.system()}


def _model() -> str | None:
    """The board's name from its device tree ("Raspberry Pi 4 Model B Rev 1.4"), else the CPU's model name."""
    try:
        return Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace") or None
    except OSError:
        return " ".join(cpuinfo_field("model name")) or None


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; a session is a forked child, so it starts from the server's pages)."""
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def check_artifact(artifact: str, manifest: dict, info: dict | None, board: str) -> None:
    """Refuse, before upload, an artifact the board cannot run: not a TVM CPU module, another arch, CPU features
    the board lacks, or a board that does not say what it is (a stock `tvm.exec.rpc_server`)."""
    check_backend(artifact, manifest)
    target = manifest["target"]
    why = mismatch(target, require_info(info, board))
    if why:
        raise EdgecError(f"{artifact} (target '{target['name']}') cannot run on {board}: {why}; refusing to upload "
                         f"it; {hint(target, info, 'compile it for the board')}")


def require_info(info: dict | None, board: str) -> dict:
    if info is None:
        raise EdgecError(f"{board} does not say what CPU it has (no {INFO_FUNCTION}: it runs a stock "
                         "tvm.exec.rpc_server); serve it with `edgec board serve` (docs/boards.md)")
    return info


def mismatch(target: dict, info: dict) -> str | None:
    """Why a board that says `info` cannot run code for `target` (a manifest's target dict); None when it can."""
    if target.get("arch") != info["arch"]:
        return f"its code is for {target.get('arch')} and the board is {info['arch']}"
    missing = [f for f in target.get("cpu_features", []) if f not in info["cpu_features"]]
    if missing:
        return f"its code needs CPU features {', '.join(missing)}, which the board lacks"
    return None


def hint(target: dict, info: dict, action: str) -> str:
    generic = {"aarch64": "aarch64", "x86_64": "x86-64-avx2"}.get(info["arch"], "...")
    if target.get("arch") != info["arch"]:
        return f"{action} (e.g. --target {generic}) or use a key whose boards are {target.get('arch')}"
    return f"{action} with a target it has the features for (e.g. --target {generic})"


def check_backend(artifact: str, manifest: dict) -> None:
    """TVM RPC runs TVM modules on a board's CPU: refuse anything else before connecting."""
    backend, device = manifest["backend"], manifest["target"].get("device")
    if backend != "tvm":
        raise UnsupportedError(f"{artifact}: {backend} artifacts cannot run over TVM RPC, which runs TVM modules; "
                               "bench it on the board itself (`edgec bench` there), or compile with --backend tvm")
    if device != "cpu":
        raise UnsupportedError(f"{artifact}: compiled for {device} (target '{manifest['target']['name']}'); edgec "
                               "runs TVM artifacts over RPC on a board's CPU only")
