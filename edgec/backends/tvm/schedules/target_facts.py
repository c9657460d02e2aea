"""What the schedule rules need to know about a CPU target, read from the target itself."""

from __future__ import annotations


def vector_bits(target) -> int:
    """Width of one SIMD register in bits for the target's -mcpu/-mattr.

    On x86 the width comes from the target's feature set (AVX-512F: 512, AVX: 256, else SSE's
    128): TVM 0.27's `llvm_get_vector_width` reports 512 for every x86 CPU, Haswell included.
    """
    from tvm.target.codegen import llvm_get_vector_width, target_has_features

    if is_x86(target):
        if target_has_features("avx512f", target):
            return 512
        return 256 if target_has_features("avx", target) else 128
    width = llvm_get_vector_width(target)
    return width if width > 0 else 128


def vector_lanes(target, dtype_bits: int) -> int:
    """SIMD lanes of one vector register for elements of `dtype_bits`."""
    return max(1, vector_bits(target) // dtype_bits)


def vector_registers(target) -> int:
    """Architectural vector registers: 32 on AArch64 (NEON/SVE) and AVX-512 x86, else 16."""
    if _triple(target).startswith("aarch64") or vector_bits(target) >= 512:
        return 32
    return 16


def is_x86(target) -> bool:
    return _triple(target).startswith(("x86_64", "i686", "i386"))


def is_cpu(target) -> bool:
    return target.kind.name == "llvm"


def _triple(target) -> str:
    triple = target.attrs.get("mtriple")
    if triple:
        return str(triple)
    from tvm.target.codegen import llvm_get_system_triple

    return str(llvm_get_system_triple())
