"""Expand ONNX ops TVM's importer lacks into the ops their ONNX definition is made of (function ops).

Many standard ops are defined by the ONNX spec as functions of other ops: Celu, Swish, SwiGLU, the window
ops (Hann, Hamming, Blackman), CenterCropPad, RotaryEmbedding, the loss ops... TVM 0.27's ONNX importer
has converters for none of these. onnx's inliner replaces each such node by the spec's own body for the
model's opset (context-dependent bodies built for the node's attributes and input types), recursively, so
TVM imports the ops it knows; an op with no body stays, and the unsupported-op check names it.
"""

from __future__ import annotations

import onnx
import onnx.inliner


def run(model: onnx.ModelProto, supported) -> tuple[onnx.ModelProto, list[str]]:
    """(model with every standard op not in `supported` that has an ONNX function body expanded, the ops
    expanded); the input model is not modified."""
    lacking = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and n.op_type not in supported}
    if not lacking:
        return model, []
    every = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == "" and s.name not in supported}
    expanded = onnx.inliner.inline_selected_functions(model, [("", op) for op in sorted(every)],
                                                      inline_schema_functions=True)
    left = {n.op_type for n in expanded.graph.node if n.domain in ("", "ai.onnx")}
    done = sorted(op for op in lacking if op not in left)
    return (expanded, done) if done else (model, [])
