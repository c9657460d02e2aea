"""Lower QDQ convolutions and matmuls to integer arithmetic (u8/s8 products, int32 accumulation).

Pattern (what ONNX Runtime's QDQ quantizer emits, imported by TVM's ONNX frontend):
    conv2d(dequantize(x_q, s_x, z_x), dequantize(W_q, s_w, 0, axis=0))        [NCHW / OIHW]
    matmul(dequantize(x_q, s_x, z_x), permute_dims(dequantize(W_q, s_w, 0, axis=0)))  [Gemm, transB]
    matmul(dequantize(x_q, s_x, z_x), dequantize(W_q, s_w, 0, axis=1))        [MatMul]
with x_q uint8/int8 and a per-tensor s_x, z_x; W_q an int8 constant, symmetric (zero point 0),
per output channel or per tensor; s_x, z_x, s_w constants.

Rewrite: the float result is `s_x * s_w[c] * (sum(x_q * W_q) - z_x * sum(W_q[c]))`:
    acc = conv2d|matmul(x_q, W_q, out_dtype="int32")
    out = astype(acc - z_x * sum(W_q[c]), float32) * (s_x * s_w[c])
The correction `z_x * sum(W_q[c])` and the scale are per-channel constants computed here. Padding
with z_x (an explicit pad) makes a padded tap contribute z_x * w, which the correction removes, as
zero does in float; with z_x = 0 (after a ReLU) the conv keeps its own zero padding. Input channels
are padded to a multiple of 4 (zero weights) for the dot-product kernels; 1-3 channels (an image
input) are packed into one int32 per pixel and viewed as NHWC bytes (`_pack_pixels`); int8 activations are
shifted to uint8 (x + 128, z_x + 128). The int32 bias (scale s_x * s_w) is taken off the correction.
Then every per-tensor quantize/dequantize becomes elementwise ops (which ConvertLayout carries
through NHWC), a quantize's 1 / s_y merged into the rescale: FuseOps fuses the requantize epilogue
`round(acc' * m[c]) + z_y, clipped, cast`, and residual adds of dequantized tensors, into the
conv/matmul kernel. Depthwise convs are lowered too (int32 vector code, no dot product); max pooling
runs on x_q before this (`quantized_pool`). Other grouped convs and per-channel activations stay
float (dequantize -> op -> quantize).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.backends.tvm.rewrites._match import op_name, producer, rewrite_functions, scalar_value, transposed

QUANTIZED_INPUTS = ("uint8", "int8")
DOT_K = 4  # input channels are padded to a multiple of this: x86 dot products take 4 u8 x s8 at once


@mutator
class _IntegerLowering(PyExprMutator):
    """First round (`elementwise=False`): conv2d/matmul; second: the remaining per-tensor (de)quantizes."""

    def __init__(self, mod: tvm.IRModule, elementwise: bool):
        super().__init__(mod)
        self.elementwise = elementwise

    def _activation(self, expr):
        """(x_q, s_x, z_x) for dequantize(x_q) with per-tensor constant parameters, else None."""
        dq = producer(self, expr)
        if op_name(dq) != "relax.dequantize":
            return None
        x_q, scale, zero = dq.args
        s_x, z_x = scalar_value(producer(self, scale)), scalar_value(producer(self, zero))
        if s_x is None or z_x is None or str(x_q.ty.dtype) not in QUANTIZED_INPUTS:
            return None
        if str(x_q.ty.dtype) == "int8":  # as uint8 (x + 128, zero point + 128): the u8 x s8 dot products
            shifted = relax.op.add(relax.op.astype(x_q, "int32"), relax.const(128, "int32"))
            return relax.op.astype(shifted, "uint8"), float(s_x), int(z_x) + 128
        return x_q, float(s_x), int(z_x)

    def _weight(self, expr, channel_axis: int):
        """(W_q int8 array, per-channel scale array) for dequantize(constant) with zero point 0, else None."""
        dq = producer(self, expr)
        if op_name(dq) != "relax.dequantize":
            return None
        w_q, scale, zero = (producer(self, a) for a in dq.args)
        if not all(isinstance(a, tvm.ir.Constant) for a in (w_q, scale, zero)):
            return None
        w, s, z = w_q.value.numpy(), scale.value.numpy().astype(np.float64), zero.value.numpy()
        if w.dtype != np.int8 or np.any(z != 0):
            return None
        if s.size == 1:
            s = np.full(w.shape[channel_axis], s.reshape(()))
        elif s.size != w.shape[channel_axis] or int(dq.attrs.axis) != channel_axis:
            return None
        return w, s

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = op_name(call)
        if self.elementwise:
            lowered = self._elementwise_qdq(call) if name in ("relax.quantize", "relax.dequantize") else None
        elif name == "relax.nn.conv2d":
            lowered = self._conv2d(call)
        elif name == "relax.matmul":
            lowered = self._matmul(call)
        elif name == "relax.add":
            lowered = self._fold_bias(call)
        else:
            lowered = None
        return call if lowered is None else lowered

    def _conv2d(self, call: relax.Call):
        attrs, groups = call.attrs, int(call.attrs.groups)
        if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or str(call.ty.dtype) != "float32":
            return None
        x, w = self._activation(call.args[0]), self._weight(call.args[1], 0)
        if x is None or w is None:
            return None
        (x_q, s_x, z_x), (w_q, s_w) = x, w
        depthwise = groups == w_q.shape[0] and w_q.shape[1] == 1
        if not _accumulates_in_int32(w_q[0].size) or (groups != 1 and not depthwise):
            return None
        correction = z_x * w_q.reshape(w_q.shape[0], -1).sum(axis=1, dtype=np.int64)
        padding = [int(p) for p in attrs.padding]  # top, left, bottom, right
        extra_channels = 0 if depthwise else -w_q.shape[1] % DOT_K
        if extra_channels:  # zero weights: the padded channels add nothing, whatever their activations
            w_q = np.pad(w_q, [(0, 0), (0, extra_channels), (0, 0), (0, 0)])
        top, left, bottom, right = padding
        layout = "NCHW"
        if w_q.shape[1] == DOT_K and extra_channels:  # 1-3 input channels: one int32 per pixel, NHWC
            x_q, layout = self._pack_pixels(x_q), "NHWC"
            if z_x and any(padding):
                x_q = relax.op.nn.pad(x_q, [0, 0, top, bottom, left, right, 0, 0], pad_value=float(z_x))
                padding = [0, 0, 0, 0]
        elif extra_channels or (z_x and any(padding)):
            x_q = relax.op.nn.pad(x_q, [0, 0, 0, extra_channels, top, bottom, left, right], pad_value=float(z_x))
            padding = [0, 0, 0, 0]
        acc = relax.op.nn.conv2d(x_q, _weight_const(w_q, k_axis=1), strides=attrs.strides, padding=padding,
                                 dilation=attrs.dilation, groups=groups, data_layout=layout, out_layout="NCHW",
                                 out_dtype="int32")
        return _rescale(acc, correction, s_x * s_w, channel_shape=(1, -1, 1, 1))

    def _matmul(self, call: relax.Call):
        if str(call.ty.dtype) != "float32" or call.args[1].ty.ndim != 2:
            return None
        x = self._activation(call.args[0])
        rhs = producer(self, call.args[1])
        if transposed(rhs) is not None:
            w = self._weight(transposed(rhs), 0)  # Gemm transB: W_q is [N, K]
            w = None if w is None else (w[0].T, w[1])
        else:
            w = self._weight(rhs, 1)  # MatMul: W_q is [K, N]
        if x is None or w is None:
            return None
        (x_q, s_x, z_x), (w_q, s_w) = x, w
        if not _accumulates_in_int32(w_q.shape[0]):
            return None
        acc = relax.op.matmul(x_q, _weight_const(np.ascontiguousarray(w_q), k_axis=0), out_dtype="int32")
        return _rescale(acc, z_x * w_q.sum(axis=0, dtype=np.int64), s_x * s_w, channel_shape=(-1,))


    def _fold_bias(self, call: relax.Call):
        """add(rescaled, dequantize(b_q, s_x * s_w)) -> the rescale with b_q taken off the correction: the
        int32 bias ONNX Runtime quantizes with the accumulator's scale is added in integers, for free."""
        rescaled, bias = (producer(self, a) for a in call.args)
        if op_name(bias) == "relax.reshape":
            bias = producer(self, bias.args[0])
        if op_name(rescaled) != "relax.multiply" or op_name(bias) != "relax.dequantize":
            return None
        cast = producer(self, rescaled.args[0])
        shifted = producer(self, cast.args[0]) if op_name(cast) == "relax.astype" else None
        if op_name(shifted) != "relax.subtract" or op_name(producer(self, shifted.args[0])) not in (
                "relax.nn.conv2d", "relax.matmul") or str(shifted.args[0].ty.dtype) != "int32":
            return None
        b_q, b_scale, b_zero = (producer(self, a) for a in bias.args)
        correction, scale = (producer(self, a) for a in (shifted.args[1], rescaled.args[1]))
        if not all(isinstance(a, tvm.ir.Constant) for a in (b_q, b_scale, b_zero, correction, scale)):
            return None
        b, corr, sc = b_q.value.numpy(), correction.value.numpy(), scale.value.numpy()
        if (b.dtype != np.int32 or np.any(b_zero.value.numpy() != 0) or b.size != corr.size
                or not np.allclose(np.broadcast_to(b_scale.value.numpy(), b.shape), sc.reshape(-1), rtol=1e-6)):
            return None
        folded = corr.astype(np.int64) - b.astype(np.int64).reshape(corr.shape)
        if np.abs(folded).max(initial=0) >= 2**31:
            return None
        acc = relax.op.subtract(shifted.args[0], relax.const(folded.astype(np.int32)))
        return relax.op.multiply(relax.op.astype(acc, "float32"), rescaled.args[1])

    def _elementwise_qdq(self, call: relax.Call):
        """Per-tensor (de)quantize as elementwise ops, which ConvertLayout carries through in NHWC."""
        data, scale, zero = call.args
        s, z = scalar_value(producer(self, scale)), scalar_value(producer(self, zero))
        if s is None or z is None:
            return None
        z = relax.const(np.float32(z))
        if op_name(call) == "relax.dequantize":
            if str(call.ty.dtype) != "float32":
                return None
            return relax.op.multiply(relax.op.subtract(relax.op.astype(data, "float32"), z), relax.const(np.float32(s)))
        dtype = str(call.ty.dtype)
        if dtype not in QUANTIZED_INPUTS or str(data.ty.dtype) != "float32":
            return None
        info = np.iinfo(dtype)
        # x * (1 / s), not x / s: a multiply is several times cheaper than a divide in the epilogue; the
        # two differ by at most one ulp before rounding, so at most one step on an exact .5 tie. A
        # constant factor of x (a conv's rescale) is merged into it.
        factor, scaled = 1 / np.float64(s), producer(self, data)
        if op_name(scaled) == "relax.multiply" and isinstance(producer(self, scaled.args[1]), tvm.ir.Constant):
            data, factor = scaled.args[0], producer(self, scaled.args[1]).value.numpy().astype(np.float64) * factor
        return _quantized(data, factor, z, info, dtype)

    def _pack_pixels(self, x_q) -> relax.Expr:
        """x_q [N, C, H, W] (C < 4, 8-bit) as [N, H, W, 4]: channel c of a pixel is byte c of one int32 (little
        endian), `sum(x_q[:, c] << 8c)`, viewed as bytes. Elementwise int32 arithmetic over W vectorizes, where
        gathering C planes into interleaved bytes does not; the 4th byte is 0 (its weights are zero). A graph
        input's quantize is cast to int32 straight from float (LLVM scalarizes float -> u8 -> int32 vectors)."""
        x_q = self.builder_.normalize(x_q)  # the int8 -> uint8 shift is not yet bound to a typed var
        n, c, h, w = x_q.ty.shape
        q = producer(self, x_q)
        s, z = (scalar_value(producer(self, a)) for a in q.args[1:]) if op_name(q) == "relax.quantize" else (None, None)
        packed = None
        for channel in range(int(c)):
            if s is None or z is None:
                plane = relax.op.astype(relax.op.strided_slice(x_q, axes=[1], begin=[channel], end=[channel + 1]),
                                        "int32")
            else:
                plane = relax.op.strided_slice(q.args[0], axes=[1], begin=[channel], end=[channel + 1])
                plane = _quantized(plane, 1 / np.float64(s), relax.const(np.float32(z)), np.iinfo(str(x_q.ty.dtype)),
                                   "int32")
            plane = relax.op.left_shift(plane, relax.const(8 * channel, "int32")) if channel else plane
            packed = plane if packed is None else relax.op.bitwise_or(packed, plane)
        return relax.op.memory.view(packed, relax.ShapeExpr([n, h, w, DOT_K]), "uint8")


def _quantized(data, factor, z: relax.Constant, info: np.iinfo, dtype: str) -> relax.Expr:
    """astype(clip(round(data * factor) + z, info.min, info.max), dtype)."""
    q = relax.op.add(relax.op.round(relax.op.multiply(data, relax.const(np.float32(factor)))), z)
    q = relax.op.minimum(relax.op.maximum(q, relax.const(np.float32(info.min))), relax.const(np.float32(info.max)))
    return relax.op.astype(q, dtype)


def _accumulates_in_int32(reduction: int) -> bool:
    """True when `reduction` u8 x s8 products (and the zero-point correction) cannot overflow int32."""
    return reduction * 255 * 128 < 2**31


def _weight_const(w_q: np.ndarray, k_axis: int) -> relax.Constant:
    """W_q as int8, or as int16 where the target's u8 x s8 pair sums (vpmaddubsw) could saturate int16:
    255 * (|w[2j]| + |w[2j + 1]|) along the reduction axis must stay <= 32767 (7-bit weights always do)."""
    from edgec.backends.tvm.schedules.cpu.int8_intrinsics import pmaddubsw_saturates

    target = tvm.target.Target.current(allow_none=True)
    magnitude = np.abs(w_q.astype(np.int32))
    if w_q.shape[k_axis] % 2:
        pair_max = 2 * int(magnitude.max(initial=0))
    else:
        pairs = np.moveaxis(magnitude, k_axis, 0)
        pair_max = int((pairs[0::2] + pairs[1::2]).max(initial=0))
    if target is not None and pmaddubsw_saturates(target) and 255 * pair_max > np.iinfo(np.int16).max:
        return relax.const(w_q.astype(np.int16))
    return relax.const(w_q)


def _rescale(acc, correction: np.ndarray, scale: np.ndarray, channel_shape: tuple) -> relax.Expr:
    """astype(acc - correction, float32) * scale, both per output channel."""
    shifted = relax.op.subtract(acc, relax.const(correction.astype(np.int32).reshape(channel_shape)))
    return relax.op.multiply(relax.op.astype(shifted, "float32"),
                             relax.const(scale.astype(np.float32).reshape(channel_shape)))


@tvm.transform.module_pass(opt_level=0, name="edgec.IntegerQDQ")
def integer_qdq(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Rewrite every matching QDQ conv2d/matmul, then every per-tensor (de)quantize, in the Relax functions."""
    for elementwise in (False, True):
        lowering = _IntegerLowering(mod, elementwise)
        mod = rewrite_functions(mod, lowering)
        mod = relax.transform.DeadCodeElimination()(mod)
    return mod
