"""bf16 operands for the heavy ops (`--precision bf16`): conv2d and matmul with constant weights.

Rewrite (before ConvertLayout, NCHW/OIHW as imported):
    conv2d(x, W)  ->  conv2d(astype(x, bfloat16), bf16(W), out_dtype=float32)       [groups = 1]
    matmul(x, W)  ->  matmul(astype(x, bfloat16), bf16(W), out_dtype=float32)       [W constant [K, N]]
    matmul(x, permute_dims(W))  ->  the same, W transposed here (Gemm transB)
Weights are rounded to bfloat16 here (round to nearest even, ml_dtypes); activations by the cast, which
FuseOps puts in the producing kernel's epilogue (TVM's legalization rounds to nearest even). Products
accumulate in fp32, so only the operands lose precision (8 mantissa bits), as with OpenVINO's bf16 and
AVX512_BF16's `vdpbf16ps`. (3x3 stride-1 convs then become Winograd convs, `rewrites.winograd`, whose bf16
operands are the transformed input tiles and weights.) Input channels are padded to an even count (a zero
channel in x and W): the dot-product kernels take bf16 pairs (`schedules.cpu.bf16_intrinsics`), on whole
vectors of output channels: a matmul's weight gets zero columns up to a multiple of 16 and its result is
sliced back (GPT-2's LM head, 50257 words: 13.9 -> 9.4 ms on two Zen 4 cores, where the Gemm rule ran it on
widened bf16).
The first layer stays fp32: a conv/matmul whose activation no other conv/matmul produced reads the
graph input (an image, token embeddings), where rounding to 8 mantissa bits costs the most (the zoo's
MobileNetV2 on digits: max logit error 4.6% -> 1.7% of the logit range, one of 360 top-1 labels
flipped -> none; OpenVINO's bf16 flips the same one). Everything else that is not a conv2d/matmul with
constant weights (depthwise convs, attention's activation x activation matmuls, normalizations, graph
I/O) stays fp32 too.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.backends.tvm.rewrites._match import op_name, producer, rewrite_functions, transposed

BF16_PAIR = 2  # bf16 values per 32-bit lane of one dot-product instruction: input channels padded to this
OUTPUT_LANES = 16  # a matmul's output columns are padded to whole 512-bit vectors (GPT-2's 50257-word LM head)...
MAX_PAD_FRACTION = 8  # ... where that adds at most 1/8 of the work; the result is sliced back


HEAVY_OPS = ("relax.nn.conv2d", "relax.matmul")


@mutator
class _Bfloat16Operands(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.after_heavy: dict = {}  # var -> whether a conv/matmul is among its producers

    def _after_heavy_op(self, expr) -> bool:
        """Whether a conv2d/matmul is among the producers of `expr` (False for graph inputs and constants)."""
        pending, order = [expr], []
        while pending:  # the unresolved producers, depth first (no recursion: graphs have thousands of ops)
            var = pending.pop()
            if isinstance(var, relax.Tuple):
                pending.extend(var.fields)
                continue
            if not isinstance(var, relax.Var) or var in self.after_heavy:
                continue
            order.append(var)
            bound = self.lookup_binding(var)
            if bound is not None and op_name(bound) not in HEAVY_OPS:
                pending.extend(_inputs(bound))
        for var in reversed(order):  # producers before consumers
            bound = self.lookup_binding(var)
            if bound is None:
                self.after_heavy[var] = False
            elif op_name(bound) in HEAVY_OPS:
                self.after_heavy[var] = True
            else:
                self.after_heavy[var] = any(self._resolved(a) for a in _inputs(bound))
        return self._resolved(expr)

    def _resolved(self, expr) -> bool:
        if isinstance(expr, relax.Tuple):
            return any(self._resolved(f) for f in expr.fields)
        return self.after_heavy.get(expr, False) if isinstance(expr, relax.Var) else False

    def _constant(self, expr) -> np.ndarray | None:
        value = producer(self, expr)
        return value.value.numpy() if isinstance(value, tvm.ir.Constant) else None

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not isinstance(call.ty, relax.TensorType) or str(call.ty.dtype) != "float32":
            return call
        name = op_name(call)
        if name not in HEAVY_OPS or not self._after_heavy_op(call.args[0]):
            return call
        lowered = self._conv2d(call) if name == "relax.nn.conv2d" else self._matmul(call)
        return call if lowered is None else lowered

    def _conv2d(self, call: relax.Call):
        attrs = call.attrs
        w = self._constant(call.args[1])
        if (w is None or w.dtype != np.float32 or int(attrs.groups) != 1 or attrs.data_layout != "NCHW"
                or attrs.kernel_layout != "OIHW"):
            return None
        x = _bf16(call.args[0])
        if w.shape[1] % BF16_PAIR:  # a zero channel: it adds nothing, whatever the padded activation
            x = relax.op.nn.pad(x, [0, 0, 0, 1, 0, 0, 0, 0])
            w = np.pad(w, [(0, 0), (0, 1), (0, 0), (0, 0)])
        return relax.op.nn.conv2d(x, _bf16_const(w), strides=attrs.strides, padding=attrs.padding,
                                  dilation=attrs.dilation, groups=1, data_layout="NCHW", kernel_layout="OIHW",
                                  out_layout=attrs.out_layout, out_dtype="float32")

    def _matmul(self, call: relax.Call):
        rhs = producer(self, call.args[1])
        if transposed(rhs) is not None:
            w = self._constant(transposed(rhs))
            w = None if w is None or w.ndim != 2 else w.T
        else:
            w = self._constant(rhs)
        if w is None or w.ndim != 2 or w.dtype != np.float32 or w.shape[0] % BF16_PAIR:
            return None
        n = w.shape[1]
        extra = -n % OUTPUT_LANES
        if extra > n // MAX_PAD_FRACTION:
            extra = 0
        out = relax.op.matmul(_bf16(call.args[0]), _bf16_const(np.pad(w, [(0, 0), (0, extra)])), out_dtype="float32")
        if extra:
            out = relax.op.strided_slice(out, axes=[call.ty.ndim - 1], begin=[0], end=[n])
        return out


def _inputs(value: relax.Expr) -> list:
    """The variables and tuples a bound value reads: a call's arguments, a tuple's fields, a TupleGetItem's tuple
    (batch norm's and split's outputs)."""
    if isinstance(value, relax.TupleGetItem):
        children = [value.tuple_value]
    elif isinstance(value, relax.Tuple):
        children = list(value.fields)
    else:
        children = list(getattr(value, "args", []))
    return [c for c in children if isinstance(c, (relax.Var, relax.Tuple))]


def _bf16(x: relax.Expr) -> relax.Expr:
    return relax.op.astype(x, "bfloat16")


def _bf16_const(w: np.ndarray) -> relax.Constant:
    return relax.const(tvm.runtime.tensor(w.astype(ml_dtypes.bfloat16)))


@tvm.transform.module_pass(opt_level=0, name="edgec.Bfloat16Operands")
def bfloat16_operands(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Give every matching conv2d/matmul bf16 operands with fp32 accumulation, in the Relax functions."""
    mod = rewrite_functions(mod, _Bfloat16Operands(mod))
    return relax.transform.DeadCodeElimination()(mod)
