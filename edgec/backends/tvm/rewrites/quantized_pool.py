"""Max pooling on quantized values: no dequantize before the pool, no quantize after it.

Pattern (ONNX Runtime's QDQ MaxPool, one per-tensor parameter pair on both sides):
    quantize(max_pool2d(dequantize(x_q, s, z)), s', z')
Rewrite:
    max_pool2d(dequantize(x_q, s, z)) -> dequantize(max_pool2d(x_q), s, z)
since dequantizing, (x - z) * s with s > 0, is increasing, so it commutes with max; the pool pads
with the dtype's lowest value, which never wins a window holding one real element (ONNX pads are
smaller than the window). Then
    quantize(dequantize(x_q, s, z), s, z) -> x_q
(same parameters and dtype: round((x - z) * s / s) + z = x, inside the dtype's range). With s' != s
the quantize stays and `integer_qdq` makes it elementwise. A ResNet stem's conv thus requantizes
straight into a uint8 pool (zoo ResNet-18: 1.5 -> 0.5 us, single-threaded).
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.backends.tvm.rewrites._match import op_name, producer, rewrite_functions, scalar_value
from edgec.backends.tvm.rewrites.integer_qdq import QUANTIZED_INPUTS


@mutator
class _PoolLowering(PyExprMutator):
    def _params(self, call: relax.Call) -> list | None:
        """[scale, zero point] of a per-tensor (de)quantize with constant parameters, else None."""
        params = [scalar_value(producer(self, a)) for a in call.args[1:]]
        return None if None in params else params

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = op_name(call)
        dq = producer(self, call.args[0]) if name in ("relax.nn.max_pool2d", "relax.quantize") else None
        if op_name(dq) != "relax.dequantize" or str(dq.args[0].ty.dtype) not in QUANTIZED_INPUTS:
            return call
        params = self._params(dq)
        if params is None or params[0] <= 0:
            return call
        if name == "relax.nn.max_pool2d":
            return relax.Call(dq.op, [relax.Call(call.op, [dq.args[0]], call.attrs), *dq.args[1:]], dq.attrs)
        if self._params(call) == params and str(dq.args[0].ty.dtype) == str(call.ty.dtype):
            return dq.args[0]
        return call


@tvm.transform.module_pass(opt_level=0, name="edgec.QuantizedPool")
def quantized_pool(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Pool the quantized values of every QDQ max pool in the Relax functions."""
    lowering = _PoolLowering(mod)
    mod = rewrite_functions(mod, lowering)
    mod = relax.transform.DeadCodeElimination()(mod)
    return relax.transform.CanonicalizeBindings()(mod)  # x_q for a repeated quantize: no alias binding
