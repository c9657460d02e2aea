"""edgec's CPU schedule rules for TVM PrimFuncs: fast code without search.

Each rule is a dlight `ScheduleRule`: `apply(func, target, tunable)` returns a scheduled
`Schedule`, or None when the function is not its pattern (or a primitive refuses it), so rules
stack in `ApplyDefaultSchedule` and a function no rule takes keeps TVM's default lowering.
Correctness never depends on a rule matching; every primitive used is checked by TVM.
`small_parallel` is the one pass here that is not a rule: it runs the parallel loops of the kernels no
rule took serially where one launch does too little work.
"""

from __future__ import annotations

from edgec.backends.tvm.schedules.cpu.dot_gemm import DotGemm
from edgec.backends.tvm.schedules.cpu.gemm import Gemm
from edgec.backends.tvm.schedules.cpu.injective import Injective
from edgec.backends.tvm.schedules.cpu.row_reduction import RowReduction
from edgec.backends.tvm.schedules.cpu.winograd import Winograd


def cpu_rules() -> list:
    """The CPU rule stack, most specific first.

    Winograd (`rewrites.winograd`'s input and output transforms, named by their blocks), DotGemm (u8 x s8 ->
    int32 and bf16 x bf16 -> fp32 conv2d/matmul on x86 dot-product instructions), then Gemm (conv2d,
    matmul/dense, pooling, spatial reductions), then RowReduction (`rewrites.row_reductions`' softmax and
    LayerNorm: vectors of running values), then TVM's own CPU Reduction rule (other reductions over the
    innermost axis), then Injective (elementwise, broadcast, transpose, pad chains).
    """
    from tvm.s_tir.dlight.cpu import Reduction

    return [Winograd(), DotGemm(), Gemm(), RowReduction(), Reduction(), Injective()]


__all__ = ["Gemm", "Injective", "DotGemm", "RowReduction", "Winograd", "cpu_rules"]
