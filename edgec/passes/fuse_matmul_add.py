"""Fuse MatMul followed by a bias Add into one Gemm (the fully connected layer of most exporters).

Add(MatMul(A, B), C) = Gemm(A, B, C) (alpha = beta = 1), and likewise with the Add's operands swapped,
when A and B have rank 2 (A [M, K], B [K, N]), the MatMul output has no other consumer, and C broadcasts
one-way to [M, N] as Gemm requires: rank <= 2, each dim 1 or equal to the output's. A BatchNormalization
after the Add then folds into the Gemm too (fuse_batchnorm).
"""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet

from edgec.passes._ir_util import ir_pass
from edgec.passes.base import PassContext, register

GEMM_TYPES = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16)


class MatMulAddToGemm(RewriteRuleClassBase):
    """Add(MatMul(a, b), c) -> Gemm(a, b, c)."""

    def pattern(self, op, a, b, c):
        return op.Add(op.MatMul(a, b, _outputs=["product"]), c, _outputs=["out"])

    def check(self, context, a: ir.Value, b: ir.Value, c: ir.Value, product: ir.Value, out: ir.Value) -> MatchResult:
        result = MatchResult()
        if any(v.shape is None or len(v.shape) != 2 for v in (a, b, out)) or c.shape is None or len(c.shape) > 2:
            return result.fail("needs rank-2 MatMul operands and a bias of known rank <= 2")
        if a.dtype not in GEMM_TYPES or len(product.uses()) != 1 or product.is_graph_output():
            return result.fail("not a float type, or the MatMul output has other consumers")
        for dim, target in zip(reversed(c.shape.dims), reversed(out.shape.dims)):
            if dim != 1 and dim != target:
                return result.fail(f"bias dim {dim} does not broadcast to {target}")
        return result

    def rewrite(self, op, a: ir.Value, b: ir.Value, c: ir.Value, product: ir.Value, out: ir.Value):
        return op.Gemm(a, b, c)


RULES = RewriteRuleSet(MatMulAddToGemm.rule().commute())


@register("fuse_matmul_add")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    fused = RULES.apply_to_model(ir_model)
    return common.RemoveUnusedNodesPass()(ir_model).modified or fused > 0
