"""Fold `permute_dims` and `reshape` of constants with numpy, before legalization.

ConvertLayout turns every conv weight into `permute_dims(W, [2, 3, 1, 0])` (OIHW -> HWIO) and
every bias into `permute_dims(reshape(b, [1, C, 1, 1]), [0, 2, 3, 1])`. Both are pure data
movement: `np.transpose` / `np.reshape` give the same array bit for bit, without building a
TVM kernel per weight shape.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.backends.tvm.rewrites._match import rewrite_functions


@mutator
class _Folder(PyExprMutator):
    def _constant(self, expr: relax.Expr):
        if isinstance(expr, relax.Var):
            expr = self.lookup_binding(expr)
        return expr.value.numpy() if isinstance(expr, tvm.ir.Constant) else None

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in ("relax.permute_dims", "relax.reshape"):
            return call
        data = self._constant(call.args[0])
        if (data is None or not isinstance(call.ty, relax.TensorType) or call.ty.shape is None
                or not all(isinstance(d, tvm.tirx.IntImm) for d in call.ty.shape.values)):
            return call
        if call.op.name == "relax.permute_dims":
            axes = call.attrs.axes
            result = np.transpose(data, None if axes is None else [int(a) for a in axes])
        else:
            shape = [int(d.value) for d in call.ty.shape.values]
            result = data.reshape(shape)
        return relax.const(np.ascontiguousarray(result), call.ty.dtype)


@tvm.transform.module_pass(opt_level=0, name="edgec.FoldConstantMoves")
def fold_constant_moves(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Replace each permute_dims/reshape of a constant by the moved constant, in every Relax function."""
    folder = _Folder(mod)
    mod = rewrite_functions(mod, folder)
    return mod
