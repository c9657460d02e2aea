"""Where each NonMaxSuppression runs, from the backend's capabilities; split off the ones it cannot run.

`plan` asks the backend (`Backend.nms_unsupported`) about every NonMaxSuppression node. A node the backend
runs stays in the graph ("backend"). Any other node is cut out ("host"): its boxes and scores become graph
outputs, and the runtime computes its `selected_indices` with edgec.runtime.host_nms (numpy, ONNX Runtime's
semantics) from the spec recorded in the manifest's "nms" entry. The cut is exact, not approximate: the
compiled graph computes the same boxes and scores, and host NMS selects what ONNX Runtime selects.

The host path needs the node's output to be a graph output only (nothing downstream in the graph) and
max_output_boxes_per_class / iou_threshold / score_threshold to be constants; otherwise the node cannot
run anywhere and compilation fails naming it.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from edgec.errors import UnsupportedError
from edgec.frontend.loader import io_spec, node_label
from edgec.passes import eliminate_dead
from edgec.passes.base import PassContext
from edgec.targets import Target

OP = "NonMaxSuppression"


def nms_nodes(model: onnx.ModelProto) -> list[tuple[int, onnx.NodeProto]]:
    return [(i, n) for i, n in enumerate(model.graph.node) if n.op_type == OP and n.domain in ("", "ai.onnx")]


def constant_inputs(model: onnx.ModelProto) -> dict[str, float | int]:
    """Scalar (or one-element) constants by value name: initializers and Constant nodes."""
    tensors = {t.name: t for t in model.graph.initializer}
    tensors.update({n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value"})
    return {name: numpy_helper.to_array(t).reshape(-1)[0].item() for name, t in tensors.items()
            if numpy_helper.to_array(t).size == 1}


def only_graph_output(model: onnx.ModelProto, node: onnx.NodeProto) -> str | None:
    """None when the node's output is a graph output that no node reads; else the reason."""
    readers = [n.name or n.op_type for n in model.graph.node if node.output[0] in n.input]
    if readers:
        return f"its output '{node.output[0]}' is read by {', '.join(readers[:3])}"
    if node.output[0] not in {o.name for o in model.graph.output}:
        return f"its output '{node.output[0]}' is not a graph output"
    return None


def host_spec(model: onnx.ModelProto, node: onnx.NodeProto, label: str) -> dict:
    """The runtime's description of one split-off NMS; UnsupportedError when it cannot be split."""
    consts = constant_inputs(model)
    values = []
    for i, (what, default) in enumerate((("max_output_boxes_per_class", 0), ("iou_threshold", 0.0),
                                         ("score_threshold", None)), start=2):
        name = node.input[i] if len(node.input) > i else ""
        if name and name not in consts:
            raise UnsupportedError(f"{label}: {what} ('{name}') is computed in the graph, so NMS cannot run on "
                                   "the host; make it a constant or compile with --backend ort")
        values.append(consts[name] if name else default)
    reason = only_graph_output(model, node)
    if reason:
        raise UnsupportedError(f"{label} must run on the host but {reason}; make the NMS output a graph output "
                               "(gather the detections after the runtime) or compile with --backend ort")
    center = next((a.i for a in node.attribute if a.name == "center_point_box"), 0)
    return {"node": label, "output": node.output[0], "boxes": node.input[0], "scores": node.input[1],
            "max_output_boxes_per_class": int(values[0]), "iou_threshold": float(values[1]),
            "score_threshold": None if values[2] is None else float(values[2]), "center_point_box": int(center)}


def plan(model: onnx.ModelProto, backend, target: Target, on_host: bool = False) -> tuple[onnx.ModelProto, dict | None]:
    """(model for `backend` compiling for `target`, the manifest's "nms" entry or None when the graph has no NMS).
    on_host: run every NMS on the host even where the backend could (`edgec compile --nms host`)."""
    nodes = nms_nodes(model)
    if not nodes:
        return model, None
    decisions, splits = [], []
    for i, node in nodes:
        label = node_label(node, i)
        reason = "requested with --nms host" if on_host else backend.nms_unsupported(model, node, target)
        if reason is None:
            decisions.append({"node": label, "runs_on": backend.name, "strategy": backend.nms_strategy})
            continue
        splits.append(host_spec(model, node, label))
        decisions.append({"node": label, "runs_on": "host", "strategy": "host_nms (numpy)", "reason": reason})
    if splits:
        model = split(model, splits)
    return model, {"nodes": decisions, "host": splits, "graph_outputs": io_spec(model)[1] if splits else None}


def split(model: onnx.ModelProto, splits: list[dict]) -> onnx.ModelProto:
    """Remove the NMS nodes of `splits` and what only they used; their boxes/scores become graph outputs
    (after the existing ones)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    cut = {s["output"] for s in splits}
    kept = [n for n in out.graph.node if not (n.op_type == OP and n.output[0] in cut)]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    outputs = [o for o in out.graph.output if o.name not in cut]
    known = {v.name: v for v in [*out.graph.value_info, *out.graph.input, *out.graph.output]}
    for name in dict.fromkeys(n for s in splits for n in (s["boxes"], s["scores"])):
        if name not in {o.name for o in outputs}:
            outputs.append(known.get(name) or onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    del out.graph.output[:]
    out.graph.output.extend(outputs)
    return eliminate_dead.run(out, PassContext())  # the NMS constants are now unused
