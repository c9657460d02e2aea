"""CUDA legalization of conv2d as an implicit GEMM that dlight's tensor-core Matmul rule schedules.

TOPI's NHWC conv2d reads `pad[n, h*s + kh, w*s + kw, c]`: not a matmul access pattern, so dlight falls
back to its generic schedule (no tensor cores, no shared-memory tiling). Written instead as
`out[n, h, w, o] = sum_k col[n, h, w, k] * weight[o, k]`, with `col` an im2col *view* of the padded
input (k = (kh * KW + kw) * C + c, the OHWI weight's own row order), the reduction is a batched matmul
over rows n*h*w; the rule inlines `pad` and `col` into its shared-memory loads, so im2col is never
written to memory.
"""

from __future__ import annotations

GEMM_BLOCK = "edgec_conv_gemm"  # the reduction block's name: the CUDA rules recognise the kernel by it


def legalize_conv2d(bb, call):
    """`customize_legalize_map` entry for relax.nn.conv2d: ungrouped NHWC/OHWI convs as implicit GEMMs,
    every other conv2d through TVM's default legalization."""
    from tvm import relax
    from tvm.relax.transform.legalize_ops.nn import _nn_conv2d

    attrs = call.attrs
    if (attrs.groups != 1 or attrs.data_layout != "NHWC" or attrs.kernel_layout != "OHWI"
            or attrs.out_layout != "NHWC"):
        return _nn_conv2d(bb, call)
    data, weight = call.args
    out_channels, kh, kw, channels = (int(d) for d in weight.ty.shape)
    rows = bb.normalize(relax.op.reshape(weight, (out_channels, kh * kw * channels)))
    out_dtype = attrs.out_dtype or str(data.ty.dtype)
    return bb.call_te(_implicit_gemm, data, rows, (kh, kw), tuple(int(s) for s in attrs.strides),
                      tuple(int(p) for p in attrs.padding), tuple(int(d) for d in attrs.dilation), out_dtype,
                      primfunc_name_hint="conv2d_gemm")


def _implicit_gemm(data, rows, window, strides, padding, dilation, out_dtype):
    from tvm import te, topi

    batch, height, width, channels = data.shape
    (kh, kw), (sh, sw), (dh, dw) = window, strides, dilation
    top, left, bottom, right = padding
    out_h = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + left + right - dw * (kw - 1) - 1) // sw + 1
    padded = topi.nn.pad(data, (0, top, left, 0), (0, bottom, right, 0)) if any(padding) else data
    span = kw * channels
    col = te.compute((batch, out_h, out_w, kh * span),
                     lambda n, h, w, k: padded[n, h * sh + k // span * dh, w * sw + k % span // channels * dw,
                                               k % channels], name="edgec_im2col")
    k = te.reduce_axis((0, kh * span), name="k")
    return te.compute((batch, out_h, out_w, rows.shape[0]),
                      lambda n, h, w, o: te.sum(col[n, h, w, k].astype(out_dtype) * rows[o, k].astype(out_dtype),
                                                axis=k), name=GEMM_BLOCK)
