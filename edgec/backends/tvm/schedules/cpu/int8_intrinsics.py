"""x86 u8 x s8 -> i32 dot-product tensor intrinsics, and the one a target's CPU features allow.

Every intrinsic computes `C[i] += sum_k int32(A[k]) * int32(B[i, k])` for `lanes` outputs i and
k < 4: A is 4 consecutive uint8 activations (one int32 broadcast to all lanes), B a contiguous
`lanes x 4` int8 weight block, C the rules' register tile (`local` scope). The 16-lane VNNI and
AVX-512BW forms follow TVM's `tvm.s_tir.tensor_intrin.x86`, which is not imported: importing that
package parses every target's intrinsics (minutes), and its vpdpbusd predates LLVM 21's operand types.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from edgec.backends.tvm.schedules._loops import ACCUMULATOR_SCOPE

ACTIVATION, WEIGHT, ACCUMULATOR = "uint8", "int8", "int32"
DEPTH = 4  # u8 activations per int32 lane of one instruction


@dataclass(frozen=True)
class DotProduct:
    name: str  # registered TensorIntrin
    lanes: int  # accumulator lanes (outputs) per instruction
    temporaries: int  # vector registers the instruction sequence needs besides operands and accumulators


def _desc(lanes: int):
    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((T.int64(4),), "uint8", offset_factor=1),
             B: T.Buffer((T.int64(lanes), T.int64(4)), "int8", offset_factor=1),
             C: T.Buffer((T.int64(lanes),), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i in T.serial(T.int64(0), T.int64(lanes)):
                for k in T.serial(T.int64(0), T.int64(4)):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def _pmaddubsw(lanes: int, pmadd_ub_sw: str, pmadd_wd: str):
    """u8 x s8 pairs summed in int16 (saturating), then pairs of those in int32 (AVX2, AVX-512BW)."""

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((lanes, 4), "int8", offset_factor=1),
             C: T.Buffer((lanes,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            # one expression: a TVMScript assignment allocates a "local" buffer, from the workspace pool per tile
            C[T.ramp(T.int32(0), 1, lanes)] += T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(pmadd_wd),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(pmadd_ub_sw),
                    T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), lanes),
                                  dtype=f"uint8x{4 * lanes}"),
                    B.vload([0, 0], dtype=f"int8x{4 * lanes}"), dtype=f"int16x{2 * lanes}"),
                T.broadcast(T.int16(1), 2 * lanes), dtype=f"int32x{lanes}")

    return impl


def _vpdpbusd(lanes: int, intrinsic: str):
    """u8 x s8 quadruples summed straight into the int32 accumulators (VNNI, AVX-VNNI). LLVM 21 retyped
    the byte operands from <lanes x i32> to <4 * lanes x i8>."""
    from tvm.target.codegen import llvm_version_major

    a_type, b_type = (f"uint8x{4 * lanes}", f"int8x{4 * lanes}") if llvm_version_major() >= 21 else \
        (f"int32x{lanes}", f"int32x{lanes}")

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((lanes, 4), "int8", offset_factor=1),
             C: T.Buffer((lanes,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(intrinsic), C.vload([0], dtype=f"int32x{lanes}"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), lanes), dtype=a_type),
                T.reinterpret(B.vload([0, 0], dtype=f"int8x{4 * lanes}"), dtype=b_type), dtype=f"int32x{lanes}")

    return impl


AVX2 = DotProduct("edgec_dot_8x4_avx2", 8, temporaries=2)  # the int16 pair sums and the ones vector
AVXVNNI = DotProduct("edgec_dot_8x4_avxvnni", 8, temporaries=0)
AVX512 = DotProduct("edgec_dot_16x4_avx512", 16, temporaries=2)
VNNI = DotProduct("edgec_dot_16x4_vnni", 16, temporaries=0)

_IMPLEMENTATIONS = {
    AVX2: lambda: _pmaddubsw(8, "llvm.x86.avx2.pmadd.ub.sw", "llvm.x86.avx2.pmadd.wd"),
    AVX512: lambda: _pmaddubsw(16, "llvm.x86.avx512.pmaddubs.w.512", "llvm.x86.avx512.pmaddw.d.512"),
    AVXVNNI: lambda: _vpdpbusd(8, "llvm.x86.avx512.vpdpbusd.256"),
    VNNI: lambda: _vpdpbusd(16, "llvm.x86.avx512.vpdpbusd.512"),
}


def panel(_target) -> int:
    """The weight panel bytes a tile may stream: the Gemm rule's PANEL_BYTES on every target (the int8 tiles were
    measured with it)."""
    from edgec.backends.tvm.schedules.cpu.gemm import PANEL_BYTES

    return PANEL_BYTES


def imports(_dot: DotProduct) -> None:
    """No LLVM IR to import: the instructions are LLVM intrinsics TIR can call."""
    return None


@functools.cache
def registered(dot: DotProduct) -> str:
    """Register `dot`'s TensorIntrin on first use (parsing the TVMScript costs ~0.5 s each, which every
    compile paid at import before) and return its name for `Schedule.tensorize`."""
    TensorIntrin.register(dot.name, _desc(dot.lanes), _IMPLEMENTATIONS[dot](), override=True)
    return dot.name


def dot_products_for(target) -> list[DotProduct]:
    """The dot products the x86 target has, widest first: VNNI (then its 256-bit form, AVX-512VL) >
    AVX-512BW (then AVX2's) > AVX-VNNI > AVX2; none elsewhere (aarch64 and pre-AVX2 x86 keep the Gemm
    rule's int32 vector code). A rule takes the first whose lanes divide the output channels, so an
    8-channel conv on an AVX-512 target still gets a dot-product instruction, on a 256-bit register."""
    from tvm.target.codegen import target_has_features

    from edgec.backends.tvm.schedules.target_facts import _triple

    if not _triple(target).startswith("x86_64"):
        return []
    if target_has_features("avx512vnni", target):
        return [VNNI, AVXVNNI] if target_has_features("avx512vl", target) else [VNNI]
    if target_has_features("avx512bw", target):
        return [AVX512, AVX2]
    for feature, dot in (("avxvnni", AVXVNNI), ("avx2", AVX2)):
        if target_has_features(feature, target):
            return [dot]
    return []


def dot_product_for(target) -> DotProduct | None:
    """The fastest dot product the x86 target has (the first of `dot_products_for`), or None."""
    dots = dot_products_for(target)
    return dots[0] if dots else None


def pmaddubsw_saturates(target) -> bool:
    """True when the target's dot product adds u8 x s8 pairs in int16 (AVX2, AVX-512BW), which can saturate."""
    dot = dot_product_for(target)
    return dot is not None and dot in (AVX2, AVX512)
