"""Winograd convolution F(m x m, 3 x 3) for the CPU's 3x3 stride-1 convs with constant weights.

A direct 3x3 conv runs at the FMA units' peak (ResNet-18's at 210-220 MAC/ns on two Zen 5 cores, as ONNX
Runtime's MLAS does), so only fewer multiplies make it faster. Winograd's minimal filtering computes each
m x m output tile from an (m + 2) x (m + 2) input tile with (m + 2)^2 products per channel pair instead of
9 m^2 (Lavin & Gray, arXiv:1509.09308; matrices from TOPI's `winograd_util`):
    V[t, p, c] = (B^T d_p B)[t]                input transform: 2-D tiles p, t = (xi, nu) flattened
    M[t, p, k] = sum_c V[t, p, c] U[t, c, k]   (m + 2)^2 GEMMs: the Gemm (or DotGemm) rule's packed-weight kernel
    Y[n, h, w, k] = (A^T M_p A)                output transform: bias, residual and ReLU fuse into it
U = G g G^T is computed here from the constant HWIO weight (and stored: (m + 2)^2 / 9 times the weight's bytes,
16/9 for m = 2, 4x for m = 4). The transforms are TE computes whose small axes `schedules.cpu.winograd` unrolls
(each tile entry then folds to its few nonzero terms).
- m: F(4x4, 3x3) (4x fewer multiplies) where the map has MIN_TILES 4x4 tiles, else F(2x2, 3x3) (2.25x; 4/9 of
  F(4x4)'s weight bytes per tile, which wins on 7x7 maps at batch 1, where the GEMM streams its weights for 16
  tiles); ResNet-18's 56x56 to 14x14 convs take F(4x4), its 7x7 ones F(2x2).
- bf16 operands (`--precision bf16`, `rewrites.bfloat16`): V and U are the bf16 operands, fp32 transforms and
  accumulation, F(2x2, 3x3) only (F(4x4)'s transforms, coefficients up to 8, amplify bf16's rounding).
Rewrite (after ConvertLayout: NHWC data, HWIO weight) of convs with fp32 (or bf16) operands and fp32 output,
groups = 1, stride 1, dilation 1, padding 1, at least MIN_CHANNELS in and out channels, multiples of
CHANNEL_MULTIPLE.
"""

from __future__ import annotations

from functools import partial

import ml_dtypes
import numpy as np
import tvm
from tvm import relax

from edgec.backends.tvm.rewrites._match import op_name, producer, rewrite_functions_emitting

TILES = (4, 2)  # m, largest first: F(4x4, 3x3) does 4x fewer multiplies, F(2x2, 3x3) 2.25x with 4/9 the weight bytes
MIN_CHANNELS = 16  # fewer channels: the transforms' memory passes outweigh the saved multiplies
MIN_TILES = 16  # output tiles (batch x tile rows x tile columns) that reuse each transformed weight
BF16_TILES = (2,)  # bf16 operands (8 mantissa bits): F(4x4)'s transforms (coefficients up to 8) amplify rounding
OPERANDS = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}  # conv operand types -> U's (transformed weights)
CHANNEL_MULTIPLE = 8  # channels vectorized in the transforms: whole 256-bit vectors (AVX2, half an AVX-512 one)
INPUT_BLOCK, INPUT_HALF = "edgec_winograd_input", "edgec_winograd_input_columns"  # TE block names: the rule's
OUTPUT_BLOCK, OUTPUT_HALF = "edgec_winograd_output", "edgec_winograd_output_rows"  # pattern
OUT_ELEMWISE_FUSABLE = 4  # TVM's OpPatternKind kOutEWiseFusable


def transform_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, G) of F(m, 3) as float64 arrays: Y = A^T [(G g G^T) * (B^T d B)] A."""
    from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

    a, b, g = _cook_toom_convolution(_interpolation_points(m + 1), m, 3)
    return np.asarray(a, "float64"), np.asarray(b, "float64"), np.asarray(g, "float64")


def _linear(coefficients, terms):
    """sum(c * t) over the nonzero coefficients, with +-1 as an add or subtract (no multiply by 0 or 1)."""
    pairs = sorted(((c, t) for c, t in zip(coefficients, terms) if c != 0), key=lambda ct: ct[0] < 0)  # + first
    total = None
    for c, t in pairs:
        term = t if abs(c) == 1 else t * tvm.tirx.const(float(abs(c)), "float32")
        if total is None:
            total = term if c > 0 else -term
        else:
            total = total + term if c > 0 else total - term
    return total if total is not None else tvm.tirx.const(0.0, "float32")


def _select(index, options):
    """options[index] for a small integer expression `index` (constant once its loop is unrolled)."""
    expr = options[-1]
    for i in range(len(options) - 2, -1, -1):
        expr = tvm.tirx.Select(index == i, options[i], expr)
    return expr


def _input_transform(data, b: np.ndarray, m: int, out_dtype: str):
    """V[t, p, c] = (B^T d_p B) flattened over t, p = (n, tile row, tile column); in two passes of B^T, so a
    tile entry's expression (the select chain the schedule unrolls away) has alpha terms, not alpha^2."""
    from tvm import te, topi

    batch, height, width, channels = (int(d) for d in data.shape)
    alpha = m + 2
    rows, cols = -(-height // m), -(-width // m)
    padded = topi.nn.pad(data, (0, 1, 1, 0), (0, rows * m + 1 - height, cols * m + 1 - width, 0))
    bt = b.T

    def columns(xi, p, j, c):  # (B^T d)[xi, j]
        n, tile = p // (rows * cols), p % (rows * cols)
        y0, x0 = tile // cols * m, tile % cols * m
        d = [padded[n, y0 + i, x0 + j, c].astype("float32") for i in range(alpha)]
        return _select(xi, [_linear(bt[row], d) for row in range(alpha)])

    half = te.compute((alpha, batch * rows * cols, alpha, channels), columns, name=INPUT_HALF)
    return te.compute((alpha * alpha, batch * rows * cols, channels),
                      lambda t, p, c: _select(t % alpha, [_linear(bt[nu], [half[t // alpha, p, j, c]
                                                                          for j in range(alpha)])
                                                          for nu in range(alpha)]).astype(out_dtype),
                      name=INPUT_BLOCK)


def _output_transform(products, a: np.ndarray, m: int, shape):
    """Y[n, h, w, k] = (A^T M_p A)[h mod m, w mod m] for the tile p holding (h, w), in two passes of A^T."""
    from tvm import te

    batch, height, width, _ = shape
    alpha = m + 2
    rows, cols = -(-height // m), -(-width // m)
    at = a.T
    tiles, channels = (int(d) for d in products.shape[1:])

    def rows_of(i, p, nu, k):  # (A^T M)[i, nu]
        return _select(i, [_linear(at[row], [products[xi * alpha + nu, p, k] for xi in range(alpha)])
                           for row in range(m)])

    half = te.compute((m, tiles, alpha, channels), rows_of, name=OUTPUT_HALF)

    def value(n, h, w, k):
        p = (n * rows + h // m) * cols + w // m
        return _select(w % m, [_linear(at[j], [half[h % m, p, nu, k] for nu in range(alpha)]) for j in range(m)])

    return te.compute((batch, height, width, channels), value, name=OUTPUT_BLOCK)


def _winograd_tile(call: relax.Call, weight) -> int | None:
    """m for a conv2d the rewrite takes (`tile_size`), None for any other."""
    attrs = call.attrs
    operands = str(call.args[0].ty.dtype)
    if weight is None or str(call.ty.dtype) != "float32" or weight.dtype != OPERANDS.get(operands):
        return None
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NHWC", "HWIO", "NHWC"):
        return None
    kh, kw, channels, out_channels = weight.shape
    shape = call.args[0].ty.shape
    takes = ((kh, kw) == (3, 3) and int(attrs.groups) == 1 and [int(s) for s in attrs.strides] == [1, 1]
             and [int(d) for d in attrs.dilation] == [1, 1] and [int(p) for p in attrs.padding] == [1, 1, 1, 1]
             and min(channels, out_channels) >= MIN_CHANNELS
             and channels % CHANNEL_MULTIPLE == 0 and out_channels % CHANNEL_MULTIPLE == 0 and shape is not None
             and all(isinstance(d, tvm.tirx.IntImm) for d in shape))
    return tile_size(shape, operands) if takes else None


def tile_size(shape, operands: str = "float32") -> int | None:
    """The largest of TILES (BF16_TILES for bf16 operands) giving the NHWC input `shape` at least MIN_TILES output
    tiles, or None."""
    batch, height, width = (int(shape[i]) for i in range(3))
    sizes = BF16_TILES if operands == "bfloat16" else TILES
    return next((m for m in sizes if batch * -(-height // m) * -(-width // m) >= MIN_TILES), None)


@relax.expr_functor.mutator
class _Winograd(relax.expr_functor.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if op_name(call) != "relax.nn.conv2d":
            return call
        bound = producer(self, call.args[1])
        weight = bound.value.numpy() if isinstance(bound, tvm.ir.Constant) else None
        m = _winograd_tile(call, weight)
        if m is None:
            return call
        data = call.args[0]
        operands = str(data.ty.dtype)
        a, b, g = transform_matrices(m)
        alpha = m + 2
        # U[xi, nu, c, k] = sum_ij G[xi, i] g[i, j, c, k] G[nu, j]
        u = np.einsum("xi,ijck,yj->xyck", g, weight.astype("float64"), g).astype(OPERANDS[operands])
        u = u.reshape(alpha * alpha, *weight.shape[2:])
        shape = [int(d) for d in data.ty.shape]
        cast = producer(self, data)  # bf16: transform the fp32 activation, not its rounding
        if operands == "bfloat16" and op_name(cast) == "relax.astype" and str(cast.args[0].ty.dtype) == "float32":
            data = cast.args[0]
        v = self.builder_.emit_te(partial(_input_transform, b=b, m=m, out_dtype=operands), data,
                                  primfunc_name_hint="winograd_input")
        products = self.builder_.emit(relax.op.matmul(v, relax.const(u), out_dtype="float32"))
        out_shape = (*shape[:3], weight.shape[3])
        return self.builder_.call_te(partial(_output_transform, a=a, m=m, shape=out_shape), products,
                                     primfunc_name_hint="winograd_output")


@tvm.transform.module_pass(opt_level=0, name="edgec.Winograd")
def winograd(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Rewrite every matching 3x3 conv2d as Winograd transforms around a batched GEMM."""
    mod = rewrite_functions_emitting(mod, _Winograd(mod))
    for gvar, func in list(mod.functions_items()):
        # FuseOps would put the previous conv's output transform (and its ReLU) into this input transform:
        # a kernel of both that neither schedule fits. Marked out-elementwise-fusable, it fuses nothing before it.
        if isinstance(func, tvm.tirx.PrimFunc) and gvar.name_hint.startswith("winograd_input"):
            mod[gvar] = func.with_attr("op_pattern", OUT_ELEMWISE_FUSABLE)
    return relax.transform.DeadCodeElimination()(mod)
