"""Fold a static dimension read out of a symbolic shape: `take(shape_to_tensor(s), k)` -> a constant.

TVM's ONNX importer reads `x.shape[axis]` at run time where it normalises indices: a Gather with the
constant index i becomes `take(x, where(i < 0, i + take(shape_to_tensor(shape_of(x)), axis), i))`.
With a symbolic batch `shape_of(x)` is no constant, so each such Gather left three kernels ahead of
its take (the zoo detector's `out[:, k]` decoding: 12 of its 34 kernel calls). Pattern: `take` of a
`shape_to_tensor` whose shape has static dims at every position a constant index picks. Rewrite:
those dims as a constant of the take's dtype and index shape (`mode` wrap and clip map an index to
its position as the op does; fast only folds in-range indices). The `where` chain then has constant
inputs and folds away with the rest (`fold_constant_calls`).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.backends.tvm.rewrites._match import op_name, producer, rewrite_functions


def _static_dims(shape_value) -> list[int | None] | None:
    """The dims of a Shape-typed expression, None for each symbolic one; None when its rank is unknown."""
    values = getattr(shape_value.ty, "values", None)
    if values is None:
        return None
    return [int(d.value) if isinstance(d, tvm.tirx.IntImm) else None for d in values]


@mutator
class _Folder(PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if op_name(call) != "relax.take" or not isinstance(call.args[1], tvm.ir.Constant):
            return call
        source = producer(self, call.args[0])
        if op_name(source) != "relax.shape_to_tensor":
            return call
        dims = _static_dims(source.args[0])
        index = call.args[1].value.numpy()
        if not dims or index.dtype.kind not in "iu":
            return call
        mode = str(call.attrs.mode)
        if mode == "fast" and ((index < 0) | (index >= len(dims))).any():
            return call
        positions = np.take(np.arange(len(dims)), index, mode="clip" if mode == "clip" else "wrap")
        picked = [dims[p] for p in positions.ravel()]
        if any(d is None for d in picked):
            return call
        dtype = str(call.ty.dtype)
        return relax.const(np.array(picked, dtype).reshape(index.shape), dtype)


@tvm.transform.module_pass(opt_level=0, name="edgec.StaticDims")
def static_dims(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Replace each take of static dims from a shape tensor by those dims, in every Relax function."""
    return rewrite_functions(mod, _Folder(mod))
