"""Run aarch64 artifacts on this x86-64 host under qemu-user and check them against a host build.

    import edgec.emulate as emu
    result = emu.bench("m-aarch64.edgec", reference="m-cpu.edgec")   # `edgec bench --emulate`
    run = emu.run("m-aarch64.edgec", [x])                            # outputs + timings

The board's Python, numpy and runtime-only TVM come from a cached arm64 userland (`userland`); of
edgec only `edgec.runtime` is copied in, as on a board. qemu emulates the target's own CPU where it
knows it (Cortex-A53 for generic Armv8-A), so an instruction the board lacks fails here too.
Latency under emulation says nothing about a board: every result says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

import edgec
from edgec.emulate.userland import QEMU, EmulationUnavailable, Userland, prepare
from edgec.errors import EdgecError, InternalError, UnsupportedError
from edgec.runtime.artifact import read_manifest
from edgec.runtime.bench import REFERENCE_ATOL, compare_to_reference, load_reference, make_inputs

__all__ = ["run", "bench", "compare", "summary", "check", "EmulatedRun", "EmulationUnavailable", "ATOL",
           "RUNTIME_FILES", "runtime_tree", "qemu_cpu"]

ATOL = REFERENCE_ATOL  # max abs difference allowed between the emulated outputs and the host build's
compare = compare_to_reference
# all of edgec a board needs
RUNTIME_FILES = ("__init__.py", "errors.py", "files.py", "targets.py", "tvm_process.py", "metrics", "runtime")
NOTE = "measured under qemu-user emulation on an x86-64 host: not a board latency"
_QEMU_CPU = {"generic": "cortex-a53"}  # the oldest Armv8-A core qemu models: generic code must run there


@dataclass
class EmulatedRun:
    outputs: list[np.ndarray]  # of the first call, in manifest order
    latency_ms: dict  # emulated: not a board latency
    import_s: float  # numpy + edgec.runtime + TVM runtime, inside the emulated process
    load_s: float
    process_s: float  # the whole emulated process, start to exit
    peak_rss_mb: float  # of the qemu process (emulator included)
    qemu_cpu: str


def run(artifact: str | Path, inputs: list[np.ndarray], warmup: int = 1, iters: int = 5,
        timeout_s: float = 600, timed_rows: int = 0) -> EmulatedRun:
    """Run an aarch64 TVM artifact on `inputs` (manifest order) in the emulated board; raises EdgecError.
    The timed calls use the inputs' first `timed_rows` rows when given (all of them otherwise)."""
    manifest = read_manifest(artifact)
    board = _userland_for(artifact, manifest)
    cpu = qemu_cpu(manifest["target"].get("tvm", {}).get("mcpu", "generic"))
    with tempfile.TemporaryDirectory(prefix="edgec-emulate-") as tmp:
        app = _board_app(Path(tmp) / "app")
        np.savez(Path(tmp) / "inputs.npz", *inputs)
        argv = board.command(cpu, str(app / "board.py"), str(Path(artifact).resolve()), f"{tmp}/inputs.npz",
                             f"{tmp}/outputs.npz", str(warmup), str(iters), str(timed_rows))
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=board.env(app), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise InternalError(f"{artifact}: the emulated run took longer than {timeout_s:.0f} s; "
                                "lower --iters or --warmup") from None
        process_s = time.perf_counter() - start
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            detail = lines[-1].strip() if lines else f"exit code {proc.returncode}"
            raise InternalError(f"{artifact}: the artifact failed under emulation ({QEMU} -cpu {cpu}): {detail}")
        timings = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(Path(tmp) / "outputs.npz") as npz:
            outputs = [npz[f"arr_{i}"] for i in range(len(manifest["outputs"]))]
    return EmulatedRun(outputs, timings["latency_ms"], timings["import_s"], timings["load_s"], process_s,
                       timings["peak_rss_mb"], cpu)


def bench(artifact: str | Path, reference: str | Path | None = None, warmup: int = 1, iters: int = 10,
          batch: int | None = None, device: str = "cpu", shapes: dict | None = None) -> dict:
    """`edgec bench --emulate`: the contract's bench dict (latency labelled emulated), plus the outputs'
    max abs difference from `reference`, a build of the same model for this host, when given."""
    if device != "cpu":
        raise EdgecError(f"--emulate runs on the emulated board's CPU; drop --device {device}")
    manifest = read_manifest(artifact)
    ref = load_reference(reference, manifest) if reference is not None else None  # fail before emulating
    specs = [(i["name"], tuple(i["shape"]), i["dtype"]) for i in manifest["inputs"]]
    feeds = make_inputs(specs, batch, shapes=shapes)
    result = run(artifact, list(feeds.values()), warmup, iters)
    first = specs[0][1] if specs else ()
    batch_size = batch or (first[0] if first and isinstance(first[0], int) else 1)
    out = {
        "artifact": str(artifact), "backend": manifest["backend"], "target": manifest["target"]["name"],
        "precision": manifest.get("precision", "fp32"), "device": "cpu", "batch": int(batch_size),
        "iters": iters, "latency_ms": result.latency_ms,
        "throughput_per_s": batch_size * 1e3 / result.latency_ms["mean"], "peak_rss_mb": result.peak_rss_mb,
        "input_shapes": {name: list(x.shape) for name, x in feeds.items()},
        "emulated": {"emulator": f"{QEMU} -cpu {result.qemu_cpu}", "note": NOTE, "import_s": result.import_s,
                     "load_s": result.load_s, "process_s": result.process_s},
    }
    if ref is not None:
        out["reference"] = compare(result.outputs, ref, feeds)
    return out


def summary(result: dict) -> str:
    """The human-readable lines of `edgec bench --emulate`."""
    lat, emu = result["latency_ms"], result["emulated"]
    lines = [f"{result['artifact']}: {result['backend']} {result['target']} {result['precision']} EMULATED "
             f"({emu['emulator']}), batch {result['batch']}, {result['iters']} iters",
             "emulated latency ms (not a board latency): "
             + "  ".join(f"{k} {lat[k]:.3f}" for k in ("mean", "p50", "p90", "p99", "min", "max")),
             f"emulated process {emu['process_s']:.1f} s (imports {emu['import_s']:.2f} s, load "
             f"{emu['load_s']:.2f} s), peak RSS {result['peak_rss_mb']:.0f} MiB with qemu"]
    ref = result.get("reference")
    if ref:
        verdict = "match" if ref["within_atol"] else "MISMATCH"
        lines.append(f"outputs vs {ref['artifact']} ({ref['target']}): max abs err {ref['max_abs_err']:.3g} "
                     f"(atol {ref['atol']:g}): {verdict}")
    return "\n".join(lines)


def check(result: dict) -> None:
    """Raise InternalError when the emulated outputs differ from the reference's beyond ATOL."""
    ref = result.get("reference")
    if ref and not ref["within_atol"]:
        raise InternalError(f"{result['artifact']}: outputs under emulation differ from {ref['artifact']} by "
                            f"{ref['max_abs_err']:.3g} (more than {ref['atol']:g}); the {result['target']} build "
                            "computes different numbers, report it with both artifacts")


def _userland_for(artifact, manifest: dict) -> Userland:
    target = manifest["target"]
    if target.get("arch") != "aarch64":
        raise EdgecError(f"{artifact}: --emulate runs aarch64 artifacts; this one is for {target.get('arch')} "
                         f"(target '{target['name']}'): run it without --emulate")
    if manifest["backend"] != "tvm" or target.get("device") != "cpu":
        raise UnsupportedError(f"{artifact}: --emulate runs tvm artifacts for an aarch64 CPU; this one is "
                               f"{manifest['backend']} for device {target.get('device')} (a GPU cannot be emulated)")
    toolchain = manifest.get("toolchain", {})
    return prepare(toolchain.get("tvm") or metadata.version("apache-tvm"),
                   toolchain.get("tvm_ffi") or metadata.version("apache-tvm-ffi"), metadata.version("numpy"))


def qemu_cpu(mcpu: str) -> str:
    """The core qemu-user emulates for a target's -mcpu: itself where qemu models it, Cortex-A53 for generic."""
    known = subprocess.run([QEMU, "-cpu", "help"], capture_output=True, text=True).stdout.split()
    cpu = _QEMU_CPU.get(mcpu, mcpu)
    return cpu if cpu in known else "max"


def runtime_tree(app: Path) -> Path:
    """Copy what a board installs of edgec (RUNTIME_FILES) into app/edgec; returns `app`, for its PYTHONPATH."""
    package = Path(edgec.__file__).parent
    for name in RUNTIME_FILES:
        src = package / name
        if src.is_dir():
            shutil.copytree(src, app / "edgec" / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (app / "edgec").mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, app / "edgec" / name)
    return app


def _board_app(app: Path) -> Path:
    """A directory with what a board installs of edgec and the board-side script."""
    runtime_tree(app)
    shutil.copy2(Path(__file__).with_name("board.py"), app / "board.py")
    return app
