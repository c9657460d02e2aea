"""Lift the ONNX importer's Clip kernels back into Relax `maximum`/`minimum` ops.

TVM's ONNX importer lowers Clip (ReLU6, HardTanh, ...) straight to `call_tir` of
`topi.maximum(x, lo)` / `topi.minimum(x, hi)`. A `call_tir` is opaque to ConvertLayout (which then
wraps every Clip in two transposes) and to FuseOps' view of operators. Pattern: a `call_tir` of a
PrimFunc with one store `out[i...] = max|min(x[i...], b)` where `b` is a float immediate or a 0-d
second input. Rewrite: `R.maximum|minimum(x, b)`, which computes the same value elementwise
(scalar `b` broadcasts), and which layout conversion and fusion understand.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax, tirx
from tvm.ir import TensorLoad
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.backends.tvm.rewrites._match import rewrite_functions

_OPS = {tirx.Max: relax.op.maximum, tirx.Min: relax.op.minimum}


def _bound_kernel(func) -> tuple | None:
    """(relax op, bound) for a max/min-with-scalar kernel: bound is a float, or None for the 0-d input."""
    if not isinstance(func, tirx.PrimFunc) or len(func.params) not in (2, 3):
        return None
    stores = []
    tvm_ffi.structural_walk(func.body, (tirx.BufferStore, stores.append), order="post")
    if len(stores) != 1:
        return None
    store, buffers = stores[0], list(func.params)
    value = store.value
    if type(value) not in _OPS or not store.buffer.same_as(buffers[-1]):
        return None
    x, b = value.a, value.b
    if not (isinstance(x, TensorLoad) and x.source.same_as(buffers[0])
            and len(x.indices) == len(store.indices)
            and all(i.same_as(j) for i, j in zip(x.indices, store.indices))):
        return None
    if len(buffers) == 2 and isinstance(b, tirx.FloatImm):
        return _OPS[type(value)], float(b.value)
    if len(buffers) == 3 and isinstance(b, TensorLoad) and b.source.same_as(buffers[1]) and not b.indices:
        return _OPS[type(value)], None
    return None


@mutator
class _Lifter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.mod_ = mod

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if call.op != tvm.ir.Op.get("relax.call_tir") or not isinstance(call.args[0], relax.GlobalVar):
            return call
        kernel = _bound_kernel(self.mod_[call.args[0]])
        args = call.args[1].fields
        if kernel is None or not isinstance(call.ty, relax.TensorType):
            return call
        op, bound = kernel
        return op(args[0], args[1] if bound is None else relax.const(bound, call.ty.dtype))


@tvm.transform.module_pass(opt_level=0, name="edgec.LiftClip")
def lift_clip(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Rewrite every Clip kernel call in `main`-like Relax functions; unused kernels are then dropped."""
    lifter = _Lifter(mod)
    mod = rewrite_functions(mod, lifter)
    return relax.transform.DeadCodeElimination()(mod)
