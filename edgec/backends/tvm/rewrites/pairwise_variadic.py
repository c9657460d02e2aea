"""Rewrite the ONNX importer's variadic Sum/Max/Min/Mean as chains of binary Relax ops.

TVM's importer builds `Sum(a, b, c)` (and Max, Min, Mean) as `sum(stack([broadcast_to(a, s), ...]), axis=0)`:
a new leading axis that ConvertLayout cannot follow next to an NHWC conv (it fails with "Invalid SLayout: can't
find S in source layout ABCDE"), and a stacked copy of every input. Pattern: a `sum`/`max`/`min`/`mean` over
axis 0, without keepdims, of a `stack` on axis 0 whose fields are the inputs, each possibly `broadcast_to` the
common shape. Rewrite: `add`/`maximum`/`minimum` folded left over the inputs (ONNX defines both forms with the
same multidirectional broadcasting), Mean's sum divided by the count; elementwise ops that layout conversion
handles and fusion puts in the producer's epilogue.
"""

from __future__ import annotations

import functools

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.backends.tvm.rewrites._match import op_name, producer, rewrite_functions

_PAIRWISE = {"relax.sum": relax.op.add, "relax.mean": relax.op.add,
             "relax.max": relax.op.maximum, "relax.min": relax.op.minimum}


def _stacked_inputs(mutator_, expr) -> list | None:
    """The inputs a `stack` on axis 0 joins, with any `broadcast_to` taken off; None for anything else."""
    stack = producer(mutator_, expr)
    if op_name(stack) != "relax.stack" or int(stack.attrs.axis) != 0:
        return None
    fields = producer(mutator_, stack.args[0])
    if not isinstance(fields, relax.Tuple):
        return None
    inputs = []
    for field in fields.fields:
        value = producer(mutator_, field)
        inputs.append(value.args[0] if op_name(value) == "relax.broadcast_to" else field)
    return inputs


@mutator
class _Pairwise(PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = op_name(call)
        if name not in _PAIRWISE or call.attrs.keepdims or call.attrs.axis is None:
            return call
        if [int(a) for a in call.attrs.axis] != [0] or not isinstance(call.ty, relax.TensorType):
            return call
        inputs = _stacked_inputs(self, call.args[0])
        if not inputs:
            return call
        result = functools.reduce(lambda lhs, rhs: self.builder_.emit(_PAIRWISE[name](lhs, rhs)), inputs[1:],
                                  inputs[0])
        if name == "relax.mean":
            result = relax.op.divide(result, relax.const(len(inputs), call.ty.dtype))
        return result


@tvm.transform.module_pass(opt_level=0, name="edgec.PairwiseVariadic")
def pairwise_variadic(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Rewrite every stacked Sum/Max/Min/Mean in the module's Relax functions; the stacks are then dead."""
    mod = rewrite_functions(mod, _Pairwise(mod))
    return relax.transform.DeadCodeElimination()(mod)
