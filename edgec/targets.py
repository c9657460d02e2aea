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

from edgec.errors import EdgecError

# x86 ISA extensions (as /proc/cpuinfo spells them) that decide whether generated code can run.
X86_ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2",
    "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8",
)
_AVX2 = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2")
_AVX512 = _AVX2 + ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni")
_AVX512_BF16 = _AVX512 + ("avx512_bf16",)


@dataclass(frozen=True)
class Target:
    """A compilation target: what to generate code for and what the executing host must have."""

    name: str
    device: str  # "cpu" or "cuda"
    arch: str  # host ISA of the generated code: "x86_64" or "aarch64"
    tvm: dict = field(hash=False)
    cpu_features: tuple[str, ...] = ()
    description: str = ""
    gpu_archs: tuple[str, ...] = ()  # CUDA targets: the SM architectures the artifact runs on

    def to_json(self) -> dict:
        gpu = {"gpu_archs": list(self.gpu_archs)} if self.gpu_archs else {}
        return {"name": self.name, "device": self.device, "arch": self.arch, "tvm": self.tvm,
                "cpu_features": list(self.cpu_features), **gpu}


def _x86(name: str, mcpu: str, features: tuple[str, ...], description: str) -> Target:
    tvm = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, "num-cores": _physical_cores()}
    return Target(name, "cpu", "x86_64", tvm, features, description)


def _physical_cores() -> int:
    return max(1, os.cpu_count() or 1)


def host_cpu_flags() -> set[str]:
    """The host's CPU feature flags as /proc/cpuinfo names them (empty when unreadable). On aarch64 they come
    from the kernel's hwcaps, which /proc/cpuinfo prints as "Features": qemu-user emulates those for the
    emulated core but passes the x86 host's /proc/cpuinfo through."""
    if host_arch() == "aarch64":
        hwcaps = _aarch64_hwcaps()
        if hwcaps is not None:
            return hwcaps
    return set(cpuinfo_field("Features" if host_arch() == "aarch64" else "flags"))  # ARM / x86 name for the list


def cpuinfo_field(key: str) -> list[str]:
    """The words of /proc/cpuinfo's first `key:` line (empty when absent or unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.split()
    except OSError:
        pass
    return []


# Linux's arm64 hwcap bits (uapi/asm/hwcap.h) in order, named as /proc/cpuinfo prints them under "Features".
_HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
          "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
_HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 "
           "i8mm bf16").split()
_AT_HWCAP, _AT_HWCAP2 = 16, 26


def _aarch64_hwcaps() -> set[str] | None:
    """getauxval(AT_HWCAP / AT_HWCAP2) as feature names; None where libc has no getauxval."""
    import ctypes

    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return None
    getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
    words = ((getauxval(_AT_HWCAP), _HWCAP), (getauxval(_AT_HWCAP2), _HWCAP2))
    return {name for bits, names in words for i, name in enumerate(names) if bits >> i & 1}


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _host_cpu_target() -> Target:
    arch = host_arch()
    if arch != "x86_64":
        raise EdgecError(f"target 'cpu' auto-detection supports x86-64 hosts only (this host is {arch}); "
                         "name a target explicitly, e.g. --target x86-64-avx2")
    from edgec.tvm_process import prepare_tvm

    prepare_tvm()  # before TVM's first import
    from tvm.target import codegen  # LLVM's own host detection, the name its -mcpu accepts

    mcpu = codegen.llvm_get_system_cpu()
    flags = host_cpu_flags()
    features = tuple(f for f in X86_ISA_FLAGS if f in flags)
    return _x86("cpu", mcpu, features, f"this host ({mcpu}, {len(features)} ISA extensions detected)")


# AArch64 Linux boards: LLVM cross-compiles, aarch64-linux-gnu-gcc links (backends/tvm/link.py).
# cpu_features use the names Linux lists under "Features" in the board's /proc/cpuinfo.
_ARMV8 = ("fp", "asimd")
_ARMV82 = _ARMV8 + ("fphp", "asimdhp", "asimddp")  # Armv8.2-A half-precision SIMD and dot product


def _aarch64(name: str, mcpu: str, mattr: tuple[str, ...], features: tuple[str, ...], cores: int,
             description: str) -> Target:
    tvm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": mcpu, "mattr": list(mattr), "num-cores": cores}
    return Target(name, "cpu", "aarch64", tvm, features, description)


def jetson_orin_cpu(name: str = "jetson-orin-cpu") -> Target:
    """Jetson Orin's CPU complex (Cortex-A78AE; 8 cores on Orin NX / AGX Orin 32 GB): the CUDA target's host."""
    return _aarch64(name, "cortex-a78ae", ("+neon", "+fullfp16", "+dotprod"), _ARMV82, 8,
                    "NVIDIA Jetson Orin CPU cores only (Cortex-A78AE, Armv8.2-A)")




# CUDA GPUs: device "cuda", the SM architecture in the TVM target's "arch".
# Compute capabilities CUDA 12/13 compile for; "sm_90a"-style suffixes name arch-specific features.
CUDA_ARCHS = ("sm_50", "sm_52", "sm_53", "sm_60", "sm_61", "sm_62", "sm_70", "sm_72", "sm_75", "sm_80", "sm_86",
              "sm_87", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_100a", "sm_101", "sm_103", "sm_110", "sm_120",
              "sm_121")
_X86_HOST = {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}


def _cuda(name: str, sm: str, arch: str, host: dict, cpu_features: tuple[str, ...], description: str) -> Target:
    if sm not in CUDA_ARCHS:
        raise EdgecError(f"unknown CUDA architecture '{sm}' in target '{name}'; known: {', '.join(CUDA_ARCHS)}")
    tvm = {"kind": "cuda", "arch": sm, "max_threads_per_block": 1024, "max_num_threads": 1024,
           "max_shared_memory_per_block": 49152, "thread_warp_size": 32, "host": host}
    return Target(name, "cuda", arch, tvm, cpu_features, description, (sm,))


# `rtx`: one TensorRT-RTX engine for the GPUs its documentation lists as the default set (Ampere, Ada, Blackwell
# RTX). It has no TVM description: TVM builds for one architecture at a time (`cuda-sm_XX`).
RTX_PORTABLE = ("sm_80", "sm_86", "sm_89", "sm_120")


def _rtx() -> Target:
    return Target("rtx", "cuda", "x86_64", {}, (), "one TensorRT-RTX engine for NVIDIA GPUs sm_80, sm_86, sm_89 and "
                  "sm_120 (Ampere, Ada, Blackwell RTX) on an x86-64 host", RTX_PORTABLE)


def cuda_arch(target: Target) -> str:
    """The SM architecture ("sm_90") of a CUDA target for one GPU architecture."""
    if len(target.gpu_archs) != 1:
        raise EdgecError(f"target '{target.name}' is not one GPU architecture (it covers "
                         f"{', '.join(target.gpu_archs) or 'none'})")
    return target.gpu_archs[0]


def compute_capability(sm: str) -> str:
    """'sm_90' -> '9.0', 'sm_120' -> '12.0', 'sm_90a' -> '9.0' (what nvidia-smi and TensorRT report)."""
    digits = sm.removeprefix("sm_").rstrip("abcdefghijklmnopqrstuvwxyz")
    return f"{digits[:-1]}.{digits[-1]}"


def local_cuda_archs() -> list[str]:
    """SM architectures of this host's NVIDIA GPUs, in device order (empty without a GPU or driver)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return ["sm_" + line.strip().replace(".", "") for line in out.splitlines() if line.strip()]


def cuda_target_name(target: str, arch: str | None) -> str:
    """Apply `edgec compile --arch`: `cuda --arch sm_90` -> `cuda-sm_90`; other combinations are refused."""
    if arch is None:
        return target
    if target == "cuda":
        return f"cuda-{arch}"
    if (target == "jetson-orin" and arch == "sm_87") or target == f"cuda-{arch}":
        return target
    raise EdgecError(f"--arch {arch} does not apply to target '{target}': use it with --target cuda "
                     "(jetson-orin is always sm_87, cuda-sm_XX names its own arch)")


def _host_cuda_target() -> Target:
    archs = local_cuda_archs()
    if not archs:
        raise EdgecError("target 'cuda' means this host's GPU, but no NVIDIA GPU was found (nvidia-smi lists none); "
                         "name the architecture: --arch sm_90, or --target cuda-sm_90")
    host = dict(_X86_HOST) if host_arch() == "x86_64" else {"kind": "llvm", "mtriple": f"{host_arch()}-linux-gnu"}
    return _cuda("cuda", archs[0], host_arch(), host, (), f"this host's GPU 0 ({archs[0]})")


def _sm_target(name: str) -> Target:
    sm = name.removeprefix("cuda-")
    return _cuda(name, sm, "x86_64", dict(_X86_HOST), (), f"NVIDIA GPU {sm} on an x86-64 Linux host")


def _jetson_orin() -> Target:
    cpu = jetson_orin_cpu("jetson-orin")
    return _cuda("jetson-orin", "sm_87", "aarch64", cpu.tvm, cpu.cpu_features,
                 "NVIDIA Jetson Orin (Ampere GPU sm_87, Cortex-A78AE host)")


# Every named target, in the order `edgec --help` and errors list them; `cpu`, `cuda` and `cuda-sm_XX`
# are resolved by `resolve_target` (they depend on the host or on the name).
_NAMED = {
    "x86-64-avx2": lambda: _x86("x86-64-avx2", "haswell", _AVX2,
                                "any x86-64 CPU with AVX2+FMA (Intel Haswell+, AMD Zen+)"),
    "x86-64-avx512": lambda: _x86("x86-64-avx512", "cascadelake", _AVX512,
                                  "x86-64 with AVX-512 and VNNI (Intel Cascade Lake+, AMD Zen 4+)"),
    "x86-64-avx512-bf16": lambda: _x86("x86-64-avx512-bf16", "cooperlake", _AVX512_BF16,
                                       "x86-64 with AVX-512, VNNI and BF16 (Intel Cooper Lake, Sapphire Rapids+, "
                                       "AMD Zen 4+)"),
    "aarch64": lambda: _aarch64("aarch64", "generic", ("+neon",), _ARMV8, 4,
                                "any Armv8-A Linux board with NEON (Raspberry Pi 3/4/5, Jetson, Graviton)"),
    "aarch64-cortex-a72": lambda: _aarch64("aarch64-cortex-a72", "cortex-a72", ("+neon",), _ARMV8, 4,
                                           "Cortex-A72 boards (Raspberry Pi 4)"),
    "aarch64-cortex-a76": lambda: _aarch64("aarch64-cortex-a76", "cortex-a76", ("+neon", "+fullfp16", "+dotprod"),
                                           _ARMV82, 4, "Cortex-A76 boards (Raspberry Pi 5)"),
    "jetson-orin-cpu": jetson_orin_cpu,
    "jetson-orin": _jetson_orin,
    "rtx": _rtx,
}


def target_names() -> list[str]:
    return ["cpu", *_NAMED, "cuda", "cuda-sm_XX"]


def check_target_name(name: str) -> None:
    """Refuse an unknown target name with the list of known ones, without resolving it (no TVM import)."""
    if name not in ("cpu", "cuda", *_NAMED) and not name.startswith("cuda-sm_"):
        raise EdgecError(f"unknown target '{name}'; known targets: {', '.join(target_names())}")
    if name.startswith("cuda-sm_") and name.removeprefix("cuda-") not in CUDA_ARCHS:
        _sm_target(name)  # raises naming the architecture


def resolve_target(name: str) -> Target:
    """Return the Target for a user-facing name; unknown names fail with the list of known ones."""
    check_target_name(name)
    if name == "cpu":
        return _host_cpu_target()
    if name == "cuda":
        return _host_cuda_target()
    if name.startswith("cuda-sm_"):
        return _sm_target(name)
    return _NAMED[name]()


def missing_cpu_features(required: list[str] | tuple[str, ...]) -> list[str]:
    """Features an artifact needs that this host lacks (empty when the host can run it)."""
    if not required:
        return []
    flags = host_cpu_flags()
    if not flags:  # cannot tell (not Linux): let the loader try
        return []
    return [f for f in required if f not in flags]
