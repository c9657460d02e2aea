"""Cancel and merge layout ops: Transpose pairs, Reshape chains, Reshapes to the shape they start from.

Rules (onnxscript's where it has them):
- Transpose(Transpose(x, p1), p2) = Transpose(x, p) with p[i] = p1[p2[i]], = x when p is the identity;
  Transpose(x, identity) = x.
- U(Transpose(x, p)) = Transpose(U(x), p) for an elementwise unary U when the Transpose has no other
  consumer: sinking transposes through activations lets them meet their inverse and cancel as above.
- Reshape(x, s) with s computed at run time (Shape -> Slice -> Concat ...): when the output's dims are
  known, or follow from sizes (symbolic dims of x that reappear in the output cancel; one dim left unknown
  is the static size of x over the output's static size), and at most one output dim is symbolic, s
  becomes that constant shape with -1 for the symbolic dim, and the shape arithmetic dies.
- Reshape(Reshape(x, s1), s2) = Reshape(x, s2) for a constant s2.
- Reshape(x, s) = x when s is constant and says x's own shape: each entry equal to x's dim, 0 (copy,
  without allowzero) or a single -1 (then the remaining dim must match, sizes being equal).
"""

from __future__ import annotations

import collections
import math

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet
from onnxscript.rewriter.rules.common import no_op_transpose_rule, reshape_reshape_rule, transpose_transpose_rule

from edgec.passes._ir_util import constant, ir_pass
from edgec.passes.base import PassContext, register

MAX_ROUNDS = 32
UNARY_ELEMENTWISE = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Log", "Sqrt", "Erf", "Elu",
                     "Selu", "Softplus", "Softsign", "HardSigmoid", "HardSwish", "Reciprocal", "Floor", "Ceil")


class NoOpReshape(RewriteRuleClassBase):
    """Reshape(x, s) -> x when s spells x's shape."""

    def pattern(self, op, x, shape):
        return op.Reshape(x, shape, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x: ir.Value, shape: ir.Value, out: ir.Value) -> MatchResult:
        result = MatchResult()
        target = constant(shape)
        if target is None or x.shape is None or target.ndim != 1 or len(target) != len(x.shape):
            return result.fail("shape not constant or rank differs")
        allow_zero = out.producer().attributes.get_int("allowzero", 0)
        wildcards = 0
        for want, dim in zip(target.tolist(), x.shape):
            if want == -1:
                wildcards += 1
            elif not (want == dim or (want == 0 and not allow_zero)):
                return result.fail(f"dim {dim} != {want}")
        return result if wildcards <= 1 else result.fail("more than one -1")

    def rewrite(self, op, x: ir.Value, shape: ir.Value, out: ir.Value):
        return op.Identity(x)


class ConstantReshapeShape(RewriteRuleClassBase):
    """Reshape(x, computed s) -> Reshape(x, constant s) when sizes determine the output shape."""

    def pattern(self, op, x, shape):
        return op.Reshape(x, shape, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x: ir.Value, shape: ir.Value, out: ir.Value) -> MatchResult:
        result = MatchResult()
        if constant(shape) is not None or x.shape is None or out.shape is None:
            return result.fail("shape already constant, or shapes unknown")
        symbols = collections.Counter(d.value for d in x.shape if not isinstance(d, int))
        if None in symbols:
            return result.fail("input has an unnamed unknown dim")
        dims, unknown = [], []
        for i, dim in enumerate(out.shape):
            if isinstance(dim, int):
                dims.append(dim)
            elif symbols[dim.value] > 0:
                symbols[dim.value] -= 1
                dims.append(-1)
            else:
                dims.append(None)
                unknown.append(i)
        static_in = math.prod(d for d in x.shape if isinstance(d, int))
        static_out = math.prod(d for d in dims if d is not None and d > 0)
        if +symbols or len(unknown) > 1 or dims.count(-1) > 1 or 0 in dims or static_out == 0:
            return result.fail("sizes do not determine the output shape")
        if unknown:
            if static_in % static_out:
                return result.fail("sizes do not divide")
            dims[unknown[0]] = static_in // static_out
        elif static_in != static_out:
            return result.fail("sizes differ")
        self._dims = dims
        return result

    def rewrite(self, op, x: ir.Value, shape: ir.Value, out: ir.Value):
        dims = ir.tensor(np.array(self._dims, np.int64), name=f"{out.name}/shape")
        return op.Reshape(x, op.initializer(dims))


class SinkTransposeBelowUnary(RewriteRuleClassBase):
    """U(Transpose(x, p)) -> Transpose(U(x), p) for an elementwise unary U."""

    def __init__(self, op_type: str) -> None:
        super().__init__(f"SinkTransposeBelow{op_type}")
        self.op_type = op_type

    def pattern(self, op, x, perm):
        inner = op.Transpose(x, perm=perm, _outputs=["inner"])
        return getattr(op, self.op_type)(inner, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, perm: ir.Attr, inner: ir.Value, out: ir.Value) -> MatchResult:
        result = MatchResult()
        if perm.is_ref() or len(inner.uses()) != 1 or inner.is_graph_output():
            return result.fail("reference permutation, or the Transpose has other consumers")
        return result

    def rewrite(self, op, x, perm: ir.Attr, inner: ir.Value, out: ir.Value):
        return op.Transpose(op.op(self.op_type, x, **dict(out.producer().attributes)), perm=perm)


RULES = RewriteRuleSet([transpose_transpose_rule, no_op_transpose_rule, ConstantReshapeShape.rule(),
                        reshape_reshape_rule, NoOpReshape.rule(),
                        *(SinkTransposeBelowUnary.rule(op_type) for op_type in UNARY_ELEMENTWISE)])


@register("cancel_transpose_reshape")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    rewrites = 0
    for _ in range(MAX_ROUNDS):  # each round sinks a transpose by one op; stop when nothing matches
        applied = RULES.apply_to_model(ir_model)
        if not applied:
            break
        rewrites += applied
    identities = common.IdentityEliminationPass()(ir_model).modified
    return common.RemoveUnusedNodesPass()(ir_model).modified or identities or rewrites > 0
