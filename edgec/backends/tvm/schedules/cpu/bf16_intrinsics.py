"""x86 bf16 x bf16 -> fp32 dot-product tensor intrinsics (AVX512_BF16 `vdpbf16ps`), for the DotGemm rule.

Every intrinsic computes `C[i] += sum_k float32(A[k]) * float32(B[i, k])` for `lanes` outputs i and
k < 2: A is 2 consecutive bf16 activations (one 32-bit broadcast to all lanes), B a contiguous
`lanes x 2` bf16 weight block, C the rule's fp32 register tile. The implementation reads A and B
through int32 views of the same memory, so no bf16-typed vector reaches TVM's bf16 legalization
(which widens bf16 values to fp32), and calls a small LLVM function imported into the kernel
(`pragma_import_llvm`) that bitcasts them to the `<2n x bfloat>` operands of LLVM's intrinsic; TIR
cannot spell a bfloat vector type. Needs LLVM 18+ (bfloat operand types).
"""

from __future__ import annotations

import functools

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from edgec.backends.tvm.schedules._loops import ACCUMULATOR_SCOPE
from edgec.backends.tvm.schedules.cpu.int8_intrinsics import DotProduct

ACTIVATION, WEIGHT, ACCUMULATOR = "bfloat16", "bfloat16", "float32"
DEPTH = 2  # bf16 activations per fp32 lane of one instruction

# temporaries: LLVM hoists an unrolled tile's broadcast pairs ahead of its dot products (it does not fold them
# into vdpbf16ps's {1to16} memory operand), so a tile of 28 accumulators spilled them every step: ResNet-18's
# 56x56x64 3x3 conv took 0.72 ms as 7 x 64, 0.40 ms as 8 x 32 (16 accumulators), on two Zen 4 cores.
DPBF16_512 = DotProduct("edgec_dot_16x2_bf16", 16, temporaries=2)
DPBF16_256 = DotProduct("edgec_dot_8x2_bf16", 8, temporaries=2)  # AVX-512VL: channels 16 lanes do not divide


def panel(target) -> int:
    """The weight panel bytes a tile may stream from L2: the Gemm rule's (`panel_bytes`)."""
    from edgec.backends.tvm.schedules.cpu.gemm import panel_bytes

    return panel_bytes(target)


def _function(lanes: int) -> str:
    return f"edgec_dpbf16ps_{32 * lanes}"


def imports(dot: DotProduct) -> str:
    """The LLVM IR a kernel using `dot` imports: `<lanes x float> f(<lanes x float> c, <lanes x i32> a,
    <lanes x i32> b)`, inlined at each call."""
    n, pairs = dot.lanes, 2 * dot.lanes
    vec = f"<{n} x float>"
    return f"""
define linkonce_odr {vec} @{_function(n)}({vec} %c, <{n} x i32> %a, <{n} x i32> %b) alwaysinline {{
  %a2 = bitcast <{n} x i32> %a to <{pairs} x bfloat>
  %b2 = bitcast <{n} x i32> %b to <{pairs} x bfloat>
  %r = call {vec} @llvm.x86.avx512bf16.dpbf16ps.{32 * n}({vec} %c, <{pairs} x bfloat> %a2, <{pairs} x bfloat> %b2)
  ret {vec} %r
}}
declare {vec} @llvm.x86.avx512bf16.dpbf16ps.{32 * n}({vec}, <{pairs} x bfloat>, <{pairs} x bfloat>)
"""


def _desc(lanes: int):
    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((T.int64(DEPTH),), ACTIVATION, offset_factor=1),
             B: T.Buffer((T.int64(lanes), T.int64(DEPTH)), WEIGHT, offset_factor=1),
             C: T.Buffer((T.int64(lanes),), ACCUMULATOR, offset_factor=1, scope=ACCUMULATOR_SCOPE)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:DEPTH], B[0:lanes, 0:DEPTH])
            T.writes(C[0:lanes])
            for i in T.serial(T.int64(0), T.int64(lanes)):
                for k in T.serial(T.int64(0), T.int64(DEPTH)):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.Cast(ACCUMULATOR, A[vk]) * T.Cast(ACCUMULATOR, B[vi, vk])

    return desc


def _impl(lanes: int):
    function = _function(lanes)

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((DEPTH,), ACTIVATION, offset_factor=1), B: T.Buffer((lanes, DEPTH), WEIGHT, offset_factor=1),
             C: T.Buffer((lanes,), ACCUMULATOR, offset_factor=1, scope=ACCUMULATOR_SCOPE)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:DEPTH], B[0:lanes, 0:DEPTH])
            T.writes(C[0:lanes])
            pair = T.decl_buffer((1,), "int32", data=A.data, elem_offset=A.elem_offset // DEPTH)
            pairs = T.decl_buffer((lanes,), "int32", data=B.data, elem_offset=B.elem_offset // DEPTH)
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_extern(
                f"float32x{lanes}", function, C.vload([0], dtype=f"float32x{lanes}"),
                T.broadcast(pair[0], lanes), pairs.vload([0], dtype=f"int32x{lanes}"))

    return impl


@functools.cache
def registered(dot: DotProduct) -> str:
    """Register `dot`'s TensorIntrin on first use and return its name for `Schedule.tensorize`."""
    TensorIntrin.register(dot.name, _desc(dot.lanes), _impl(dot.lanes), override=True)
    return dot.name


def dot_products_for(target) -> list[DotProduct]:
    """`vdpbf16ps` on 512-bit registers, then (AVX-512VL) on 256-bit ones, where the x86 target has AVX512_BF16;
    none elsewhere (other targets' bf16 kernels are widened to fp32 by TVM's legalization)."""
    from tvm.target.codegen import llvm_version_major, target_has_features

    from edgec.backends.tvm.schedules.target_facts import _triple

    if not _triple(target).startswith("x86_64") or llvm_version_major() < 18:
        return []
    if not target_has_features("avx512bf16", target):
        return []
    return [DPBF16_512, DPBF16_256] if target_has_features("avx512vl", target) else [DPBF16_512]
