"""Named compilation targets and their TVM target descriptions.

A `Target` is what the user names on the command line (`cpu`, `x86-64-avx2`, `cuda-sm_90`, ...).
It resolves to a JSON-style TVM target dict (TVM 0.27 rejects CLI target strings) plus the CPU
features an artifact needs at run time, so the runtime can refuse to load code that would die
with SIGILL on the wrong machine.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

from edgec.errors import EdgecError, UnsupportedError

# x86 ISA extensions (as /proc/cpuinfo spells them) that decide whether generated code can run.
X86_ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2",
    "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8",
)
_AVX2 = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2")
_AVX512 = _AVX2 + ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni")


@dataclass(frozen=True)
class Target:
    """A compilation target: what to generate code for and what the executing host must have."""

    name: str
    device: str  # "cpu" or "cuda"
    arch: str  # host ISA of the generated code: "x86_64" or "aarch64"
    tvm: dict = field(hash=False)
    cpu_features: tuple[str, ...] = ()
    description: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "device": self.device, "arch": self.arch, "tvm": self.tvm,
                "cpu_features": list(self.cpu_features)}


def _x86(name: str, mcpu: str, features: tuple[str, ...], description: str) -> Target:
    tvm = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, "num-cores": _physical_cores()}
    return Target(name, "cpu", "x86_64", tvm, features, description)


def _physical_cores() -> int:
    return max(1, os.cpu_count() or 1)


def host_cpu_flags() -> set[str]:
    """The host's CPU feature flags as /proc/cpuinfo lists them (empty when unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _host_cpu_target() -> Target:
    arch = host_arch()
    if arch != "x86_64":
        raise EdgecError(f"target 'cpu' auto-detection supports x86-64 hosts only (this host is {arch}); "
                         "name a target explicitly, e.g. --target x86-64-avx2")
    from tvm.target import codegen  # LLVM's own host detection, the name its -mcpu accepts

    mcpu = codegen.llvm_get_system_cpu()
    flags = host_cpu_flags()
    features = tuple(f for f in X86_ISA_FLAGS if f in flags)
    return _x86("cpu", mcpu, features, f"this host ({mcpu}, {len(features)} ISA extensions detected)")


_NAMED = {
    "x86-64-avx2": lambda: _x86("x86-64-avx2", "haswell", _AVX2,
                                "any x86-64 CPU with AVX2+FMA (Intel Haswell+, AMD Zen+)"),
    "x86-64-avx512": lambda: _x86("x86-64-avx512", "cascadelake", _AVX512,
                                  "x86-64 with AVX-512 and VNNI (Intel Cascade Lake+, AMD Zen 4+)"),
}


# Contract target names this version cannot compile for yet: a clear refusal, not "unknown".
_NOT_YET = ("aarch64", "aarch64-cortex-a72", "aarch64-cortex-a76", "jetson-orin", "cuda")


def target_names() -> list[str]:
    return ["cpu", *_NAMED]


def resolve_target(name: str) -> Target:
    """Return the Target for a user-facing name; unknown names fail with the list of known ones."""
    if name == "cpu":
        return _host_cpu_target()
    if name in _NAMED:
        return _NAMED[name]()
    if name in _NOT_YET or name.startswith("cuda-sm_"):
        raise UnsupportedError(f"target '{name}' is not implemented in this edgec version yet; "
                               f"available targets: {', '.join(target_names())}")
    raise EdgecError(f"unknown target '{name}'; known targets: {', '.join(target_names())}")


def missing_cpu_features(required: list[str] | tuple[str, ...]) -> list[str]:
    """Features an artifact needs that this host lacks (empty when the host can run it)."""
    if not required:
        return []
    flags = host_cpu_flags()
    if not flags:  # cannot tell (not Linux): let the loader try
        return []
    return [f for f in required if f not in flags]
