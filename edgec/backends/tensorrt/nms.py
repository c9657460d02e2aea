"""ONNX NonMaxSuppression -> TensorRT's EfficientNMS_TRT plugin, plus an adapter back to ONNX's output.

ONNX NMS takes boxes [B, N, 4] and scores [B, C, N] and returns `selected_indices` [M, 3] int64 rows
(batch, class, box), M data-dependent. EfficientNMS_TRT takes boxes [B, N, 4] and scores [B, N, C]
and returns fixed-size, score-sorted tensors per image:

    num_detections [B, 1] int32, detection_boxes [B, K, 4], detection_scores [B, K], detection_classes [B, K] int32

Attribute mapping (ONNX input or attribute -> plugin field):

    center_point_box 0 ([y1, x1, y2, x2], any diagonal) -> box_coding 0 (BoxCorner; x/y order is irrelevant to IoU)
    center_point_box 1 ([xc, yc, w, h])                 -> box_coding 1 (BoxCenterSize)
    iou_threshold (constant input 3, default 0)          -> iou_threshold
    score_threshold (constant input 4, absent = none)    -> score_threshold (absent: -FLT_MAX, nothing filtered)
    max_output_boxes_per_class (constant input 2)        -> applied by the adapter (the plugin has no per-class cap)
    (ONNX has no such concepts)                          -> background_class -1, score_activation 0, class_agnostic 0
    K = max_output_boxes                                 =  min(N * C, 3840): room for every survivor, within
                                                            the TopK limit (K <= 3840) of the adapter's sort

The adapter turns the plugin's outputs back into `selected_indices` under the NMS node's own output
name, so everything downstream (and the artifact's outputs) is unchanged:
1. valid[b, k]  = k < num_detections[b]
2. rank[b, k]   = #{j < k valid with classes[b, j] == classes[b, k]} (detections are score-sorted, so this is
                  the detection's rank within its class); keep = valid and rank < max_output_boxes_per_class
3. box[b, k]    = the first n with scores[b, classes[b, k], n] == detection_scores[b, k] (and, for
                  box_coding 0, boxes[b, n] == detection_boxes[b, k]): the plugin copies scores (and corner
                  boxes) unchanged, so this recovers the index it does not output
4. rows sorted by (batch, class, score descending) with TopK on class * K + k, then NonZero over keep

What matches ONNX Runtime: the set of rows and their order (batch, class, score descending), for
batch > 1, no box above threshold (M = 0) and all-identical boxes (the first index is kept, as ORT does).
What can differ, exactly:
- The plugin runs NMS over the 4096 highest-scoring (box, class) candidates per image and the artifact
  keeps at most K = 3840 survivors per image; beyond those limits detections are dropped.
- Boundary ties: a score exactly equal to score_threshold, or an IoU exactly equal to iou_threshold, may be
  decided the other way; equal scores within one class may be visited in another order.
- box_coding 1: the plugin outputs corner boxes, so step 3 matches on the score alone; two boxes of one class
  with bit-identical scores resolve to the lower index.
- Memory: step 3 compares [B, K, N] scores, step 2 [B, K, K] classes; for N in the tens of thousands prefer
  nms="native" (the ONNX parser's INMSLayer, ONNX semantics, data-dependent output).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgec.errors import UnsupportedError

PLUGIN = "EfficientNMS_TRT"
PLUGIN_DOMAIN = "TRT"
MAX_DETECTIONS = 3840  # TensorRT's ITopKLayer limit on K
NO_THRESHOLD = float(np.finfo(np.float32).min)
MIN_OPSET = 13  # the adapter passes Unsqueeze/ReduceSum axes as inputs


@dataclass(frozen=True)
class EfficientNmsAttributes:
    """The EfficientNMS_TRT plugin fields (names as the plugin creator reads them)."""

    score_threshold: float
    iou_threshold: float
    max_output_boxes: int
    box_coding: int
    background_class: int = -1
    score_activation: int = 0
    class_agnostic: int = 0


@dataclass(frozen=True)
class NmsMapping:
    node: str
    attributes: EfficientNmsAttributes
    max_output_boxes_per_class: int
    num_classes: int

    def to_json(self) -> dict:
        return {"node": self.node, "mapping": PLUGIN, "attributes": asdict(self.attributes),
                "max_output_boxes_per_class": self.max_output_boxes_per_class, "num_classes": self.num_classes}


def map_attributes(model: onnx.ModelProto, node: onnx.NodeProto, label: str | None = None) -> NmsMapping:
    """The plugin fields for one NonMaxSuppression node of a shape-inferred model, or UnsupportedError
    saying why it cannot map. `label` names the node in records (default: its name)."""
    constants = _constants(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise UnsupportedError(f"opset {opset} < {MIN_OPSET}")
    shapes = _static_shapes(model)
    boxes, scores = (shapes.get(name) for name in node.input[:2])
    if scores is None or len(scores) != 3 or not isinstance(scores[1], int) or boxes is None or len(boxes) != 3:
        raise UnsupportedError("boxes must be [B, N, 4] and scores [B, C, N] with a static class count C")

    def constant(i: int, default):
        if len(node.input) <= i or not node.input[i]:
            return default
        if node.input[i] not in constants:
            raise UnsupportedError(f"input {i} ('{node.input[i]}') is not a constant")
        return constants[node.input[i]].reshape(-1)[0].item()

    per_class = int(constant(2, 0))
    if per_class <= 0:
        raise UnsupportedError("max_output_boxes_per_class is 0, so ONNX selects nothing")
    center = next((a.i for a in node.attribute if a.name == "center_point_box"), 0)
    n_boxes = scores[2]
    candidates = n_boxes * scores[1] if isinstance(n_boxes, int) else MAX_DETECTIONS
    attributes = EfficientNmsAttributes(
        score_threshold=float(constant(4, NO_THRESHOLD)), iou_threshold=float(constant(3, 0.0)),
        max_output_boxes=min(candidates, MAX_DETECTIONS), box_coding=int(center))
    if (scores[1] + 1) * attributes.max_output_boxes >= 2 ** 24:
        raise UnsupportedError(f"{scores[1]} classes are too many for the adapter's float32 sort keys")
    per_class = min(per_class, n_boxes) if isinstance(n_boxes, int) else per_class
    return NmsMapping(label or node.name, attributes, min(per_class, MAX_DETECTIONS), scores[1])


def rewrite(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[dict]]:
    """Replace each mappable NonMaxSuppression with plugin + adapter; returns (model, one record per NMS).

    A node that cannot map is left for the ONNX parser's native INMSLayer, and its record says why.
    """
    out = onnx.shape_inference.infer_shapes(model)  # a copy, with the NMS inputs' shapes known
    records, nodes, initializers = [], [], []
    for i, node in enumerate(model.graph.node):  # nodes of `model`, so clearing `out`'s list cannot touch them
        if node.op_type != "NonMaxSuppression" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        label = node.name or f"#{i}"
        try:
            mapping = map_attributes(out, node, label)
        except UnsupportedError as e:
            records.append({"node": label, "mapping": "INMSLayer (native)", "reason": str(e)})
            nodes.append(node)
            continue
        new_nodes, new_inits = plugin_with_adapter(f"edgec_nms{i}", node.input[0], node.input[1], mapping,
                                                   node.output[0])
        nodes.extend(new_nodes)
        initializers.extend(new_inits)
        records.append(mapping.to_json())
    if any(r["mapping"] == PLUGIN for r in records):
        del out.graph.node[:]
        out.graph.node.extend(nodes)
        out.graph.initializer.extend(initializers)
        out.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return out, records


def plugin_with_adapter(prefix: str, boxes: str, scores: str, mapping: NmsMapping,
                        output: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The Transpose -> EfficientNMS_TRT -> adapter nodes that compute `output` like the NMS node did."""
    t = f"{prefix}_"
    plugin_outputs = [t + n for n in ("num_detections", "detection_boxes", "detection_scores", "detection_classes")]
    nodes = [helper.make_node("Transpose", [scores], [t + "scores_bnc"], perm=[0, 2, 1], name=t + "transpose"),
             helper.make_node(PLUGIN, [boxes, t + "scores_bnc"], plugin_outputs, name=t + "plugin",
                              domain=PLUGIN_DOMAIN, plugin_version="1", **asdict(mapping.attributes))]
    adapter_nodes, initializers = adapter(prefix, boxes, scores, plugin_outputs, mapping, output)
    return nodes + adapter_nodes, initializers


def adapter(prefix: str, boxes: str, scores: str, plugin_outputs: list[str], mapping: NmsMapping,
            output: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Plugin outputs -> ONNX selected_indices [M, 3] int64 (steps 1-4 of the module docstring).

    Counts and sort keys are float32 (exact below 2**24, which map_attributes guarantees), the types
    TensorRT's reduce and TopK layers take on every version.
    """
    num, det_boxes, det_scores, det_classes = plugin_outputs
    k = mapping.attributes.max_output_boxes
    t = f"{prefix}_"
    consts = {
        "pos": np.arange(k, dtype=np.int32).reshape(1, k),
        "per_class": np.array(mapping.max_output_boxes_per_class, dtype=np.float32),
        "k": np.array(k, dtype=np.int32),
        "k64": np.array([k], dtype=np.int64),
        "drop_base": np.array(mapping.num_classes * k, dtype=np.int32),
        "four": np.array(4, dtype=np.float32),
        "ax1": np.array([1], dtype=np.int64), "ax2": np.array([2], dtype=np.int64),
        "ax3": np.array([3], dtype=np.int64), "zero": np.array(0, dtype=np.int64),
        "zero_i32": np.array(0, dtype=np.int32),
    }
    c = {name: t + name for name in consts}
    nodes = []

    def op(op_type: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op_type, inputs, [t + name], name=t + name, **attrs))
        return t + name

    def as_float(name: str) -> str:
        return op("Cast", [name], name.removeprefix(t) + "_f32", to=TensorProto.FLOAT)

    # 1-2: valid slots, rank within the class among earlier (higher-scoring) valid slots, per-class cap
    valid = op("Less", [c["pos"], num], "valid")  # [1, K] < [B, 1] -> [B, K]
    earlier = op("Less", [op("Unsqueeze", [c["pos"], c["ax1"]], "pos_row"),
                          op("Unsqueeze", [c["pos"], c["ax2"]], "pos_col")], "earlier")  # [1, K, K]: j < k
    same = op("Equal", [op("Unsqueeze", [det_classes, c["ax2"]], "cls_col"),
                        op("Unsqueeze", [det_classes, c["ax1"]], "cls_row")], "same_class")  # [B, K, K]
    prior = op("And", [op("And", [same, earlier], "same_earlier"),
                       op("Unsqueeze", [valid, c["ax1"]], "valid_row")], "prior")
    rank = op("ReduceSum", [as_float(prior), c["ax2"]], "rank", keepdims=0)
    keep = op("And", [valid, op("Less", [rank, c["per_class"]], "under_cap")], "keep")

    # 3: the box index, the first n whose class score (and corner box) equals the detection's
    safe_classes = op("Where", [valid, det_classes, c["zero_i32"]], "safe_classes")  # padding slots may hold -1
    cls64 = op("Cast", [safe_classes], "cls_i64", to=TensorProto.INT64)
    class_scores = op("GatherND", [scores, op("Unsqueeze", [cls64, c["ax2"]], "cls_idx")], "class_scores",
                      batch_dims=1)  # [B, K, N]
    match = op("Equal", [class_scores, op("Unsqueeze", [det_scores, c["ax2"]], "det_scores_col")], "score_match")
    if mapping.attributes.box_coding == 0:
        equal = op("Equal", [op("Unsqueeze", [boxes, c["ax1"]], "boxes_row"),
                             op("Unsqueeze", [det_boxes, c["ax2"]], "det_boxes_col")], "coord_equal")
        coords = op("ReduceSum", [as_float(equal), c["ax3"]], "coords_equal", keepdims=0)
        match = op("And", [match, op("Equal", [coords, c["four"]], "box_match")], "match")
    box = op("ArgMax", [as_float(match)], "box_index", axis=2, keepdims=0)

    # 4: order kept rows by (class, slot), dropped rows after them; then the kept rows, batch-major
    key = op("Where", [keep, op("Add", [op("Mul", [det_classes, c["k"]], "class_base"), c["pos"]], "kept_key"),
                       op("Add", [c["drop_base"], c["pos"]], "dropped_key")], "key")
    nodes.append(helper.make_node("TopK", [as_float(key), c["k64"]], [t + "sorted_key", t + "order"],
                                  name=t + "order", axis=1, largest=0, sorted=1))
    order = t + "order"
    keep_sorted = op("GatherElements", [op("Cast", [keep], "keep_i32", to=TensorProto.INT32), order],
                     "keep_sorted", axis=1)
    cls_sorted = op("GatherElements", [cls64, order], "cls_sorted", axis=1)
    box_sorted = op("GatherElements", [box, order], "box_sorted", axis=1)
    where = op("NonZero", [keep_sorted], "where")  # [2, M]: (batch, slot), batch-major
    slots = op("Transpose", [where], "slots", perm=[1, 0])
    batch = op("Unsqueeze", [op("Gather", [where, c["zero"]], "batch", axis=0), c["ax1"]], "batch_col")
    cls_col = op("Unsqueeze", [op("GatherND", [cls_sorted, slots], "sel_cls"), c["ax1"]], "sel_cls_col")
    box_col = op("Unsqueeze", [op("GatherND", [box_sorted, slots], "sel_box"), c["ax1"]], "sel_box_col")
    nodes.append(helper.make_node("Concat", [batch, cls_col, box_col], [output], name=t + "selected_indices", axis=1))
    used = {name for n in nodes for name in n.input}
    return nodes, [numpy_helper.from_array(v, t + name) for name, v in consts.items() if t + name in used]


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            shapes[v.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                              for d in v.type.tensor_type.shape.dim]
    return shapes
