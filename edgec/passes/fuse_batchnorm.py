"""Fold an inference BatchNormalization into the Conv / ConvTranspose / Gemm / MatMul that feeds it.

With y = x * W + b linear along W's output-channel axis and BN(y) = s * y + t per channel
(edgec/passes/_batchnorm.py):
    W' = W * s (along the output-channel axis),  b' = b * s + t
Output-channel axis of W: Conv [Cout, Cin/g, k...] -> 0 (grouped and depthwise alike); ConvTranspose
[Cin, Cout/g, k...] -> axis 1 inside each of the g groups; Gemm -> N (axis 1 of B, 0 with transB) and
b = beta * C; MatMul of a rank-2 x by a constant W [K, N] -> N, giving Gemm(x, W', b').
W' and b' are new initializers, so a weight shared with other nodes keeps its value for them. No fusion
when the producer's output has another consumer or is a graph output: batchnorm_to_affine lowers those.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common

from edgec.passes._batchnorm import inference_affine
from edgec.passes._ir_util import Namer, add_initializer, constant, ir_pass
from edgec.passes.base import PassContext, register


def _scaled_weight(producer: ir.Node, w: np.ndarray, s: np.ndarray) -> np.ndarray | None:
    """W * s along the output-channel axis, or None when W's shape does not match len(s) channels."""
    op, c = producer.op_type, len(s)
    if op == "Conv" and w.ndim >= 3 and w.shape[0] == c:
        return w * s.reshape((c,) + (1,) * (w.ndim - 1))
    if op == "ConvTranspose" and w.ndim >= 3:
        group = producer.attributes.get_int("group", 1)
        if w.shape[0] % group or w.shape[1] * group != c:
            return None
        per_group = w.reshape((group, w.shape[0] // group) + w.shape[1:])
        return (per_group * s.reshape((group, 1, w.shape[1]) + (1,) * (w.ndim - 2))).reshape(w.shape)
    if op == "Gemm" and w.ndim == 2:
        trans_b = producer.attributes.get_int("transB", 0)
        if w.shape[0 if trans_b else 1] == c:
            return w * (s.reshape(c, 1) if trans_b else s.reshape(1, c))
    if op == "MatMul" and w.ndim == 2 and w.shape[1] == c:
        return w * s.reshape(1, c)
    return None


def _fuse(graph: ir.Graph, bn: ir.Node, namer: Namer) -> bool:
    affine = inference_affine(bn)
    y = bn.inputs[0]
    producer = y.producer()
    if affine is None or producer is None or producer.domain != "" or len(producer.outputs) != 1:
        return False
    if producer.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(y.uses()) != 1 or y.is_graph_output():
        return False
    if producer.op_type == "MatMul" and (producer.inputs[0].shape is None or len(producer.inputs[0].shape) != 2):
        return False
    s, t = affine
    w = constant(producer.inputs[1])
    bias_value = producer.inputs[2] if len(producer.inputs) > 2 else None
    b = constant(bias_value) if bias_value is not None else np.zeros(1)
    if w is None or b is None or w.dtype.kind != "f":
        return False
    fused_w = _scaled_weight(producer, w.astype(np.float64), s)
    if fused_w is None:
        return False
    attributes = dict(producer.attributes)
    if producer.op_type == "Gemm":
        b = b * (attributes.pop("beta").as_float() if "beta" in attributes else 1.0)
    fused_b = b.astype(np.float64) * s + t
    if producer.op_type in ("Conv", "ConvTranspose") and fused_b.shape != s.shape:
        return False
    weight_name = producer.inputs[1].name or "weight"
    new_inputs = [producer.inputs[0],
                  add_initializer(graph, namer, f"{weight_name}_bnfused", fused_w.astype(w.dtype)),
                  add_initializer(graph, namer, f"{weight_name}_bnfused_bias", fused_b.astype(w.dtype))]
    op_type = "Gemm" if producer.op_type == "MatMul" else producer.op_type
    fused = ir.Node("", op_type, new_inputs, attributes=list(attributes.values()), name=producer.name)
    ir.convenience.replace_nodes_and_values(graph, bn, [producer, bn], [fused], [bn.outputs[0]], [fused.outputs[0]])
    return True


@register("fuse_batchnorm")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    graph = ir_model.graph
    namer = Namer(graph)
    batchnorms = [node for node in graph if node.op_type == "BatchNormalization"]
    kept = [bn.name for bn in batchnorms if not _fuse(graph, bn, namer)]
    if kept:
        ctx.notes.append(f"kept {len(kept)} of {len(batchnorms)} BatchNormalization nodes ({', '.join(kept[:5])}"
                         f"{', ...' if len(kept) > 5 else ''}): each needs a Conv, ConvTranspose, Gemm or rank-2 "
                         "MatMul with constant weights whose output nothing else reads")
    return common.RemoveUnusedNodesPass()(ir_model).modified or len(kept) < len(batchnorms)
