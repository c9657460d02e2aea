"""Accuracy-aware int8: keep the most sensitive layers in float until the accuracy drop fits a budget.

Sensitivity comes from `edgec.compare`'s machinery: the fp32 and the int8 model run on the same eval
inputs with every intermediate exposed, and each quantizable layer is scored by how much cosine
similarity to fp32 it loses itself (at its output, beyond what its inputs had already lost). The k
most sensitive layers are returned to float, with k found by bisection (re-quantizing and measuring
top-1 accuracy at each probe): the smallest k with `fp32 accuracy - int8 accuracy <= budget` (points).
k = all layers is the fp32 model itself, so the budget can always be met.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from edgec.compare import capture
from edgec.compare.diff import tensor_diff
from edgec.quantize.int8 import Int8Scheme, quantizable_nodes, quantize


@dataclass
class FallbackResult:
    model: onnx.ModelProto
    fp32_accuracy: float
    int8_accuracy: float
    kept_float: list[str]
    sensitivity: dict[str, float]
    steps: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"fp32_accuracy": self.fp32_accuracy, "int8_accuracy": self.int8_accuracy,
                "kept_float": self.kept_float, "steps": self.steps,
                "sensitivity": {k: round(v, 8) for k, v in self.sensitivity.items()}}


def _accuracy(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray, name: str) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {name: x[i:i + 64]})[0] for i in range(0, len(x), 64)])
    return float((logits.argmax(axis=1) == y).mean())


def _dequantized_names(int8: onnx.ModelProto) -> dict[str, str]:
    """fp32 tensor name -> the name of its QuantizeLinear -> DequantizeLinear round trip in `int8`."""
    quantized = {n.output[0]: n.input[0] for n in int8.graph.node if n.op_type == "QuantizeLinear"}
    return {quantized[n.input[0]]: n.output[0] for n in int8.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in quantized}


def layer_sensitivity(fp32: onnx.ModelProto, int8: onnx.ModelProto, feeds: list[dict]) -> dict[str, float]:
    """{node name: cosine lost across the node} for each quantizable node: the loss of its (re-quantized)
    output minus the largest loss among its (re-quantized) inputs, each measured against fp32."""
    ref_model, _ = capture.exposed(fp32)
    q_model, _ = capture.exposed(int8)
    ref = capture.run_onnxruntime(ref_model, feeds)
    got = capture.run_onnxruntime(q_model, feeds)
    as_quantized = _dequantized_names(int8)
    lost: dict[str, float] = {}

    def loss(tensor: str) -> float:
        seen = as_quantized.get(tensor, tensor)  # what consumers see in the int8 model
        if tensor not in lost:
            if tensor in ref[0] and seen in got[0]:
                d = tensor_diff(tensor, ("", "", 0), [g[seen] for g in got], [r[tensor] for r in ref], 0, 0)
                lost[tensor] = 1.0 - (d.cosine if d.cosine is not None else 0.0)
            else:
                lost[tensor] = 0.0
        return lost[tensor]

    nodes = {n.name: n for n in fp32.graph.node}
    return {name: max(loss(o) for o in nodes[name].output) - max([loss(i) for i in nodes[name].input if i] or [0.0])
            for name in quantizable_nodes(fp32)}


def quantize_within_budget(fp32: onnx.ModelProto, calib_feeds: list[dict], eval_x: np.ndarray,
                           eval_y: np.ndarray, budget_points: float, method: str = "minmax",
                           scheme: Int8Scheme = Int8Scheme()) -> FallbackResult:
    """Quantize, then return layers to float (most sensitive first) until the drop is within budget."""
    name = capture.input_name(fp32, "<model>")
    base = _accuracy(fp32, eval_x, eval_y, name)
    int8 = quantize(fp32, calib_feeds, method, scheme=scheme)
    acc = _accuracy(int8, eval_x, eval_y, name)
    steps = [{"kept_float": [], "accuracy": acc}]
    sensitivity = layer_sensitivity(fp32, int8, [{name: eval_x[i:i + 1]} for i in range(min(32, len(eval_x)))])
    order = sorted(sensitivity, key=lambda n: -sensitivity[n])
    best = (0, int8, acc)
    if 100 * (base - acc) > budget_points:
        low, high = 1, len(order)  # invariant: k = high meets the budget (everything float)
        best = (high, None, base)
        while low <= high:
            k = (low + high) // 2
            candidate = quantize(fp32, calib_feeds, method, exclude=tuple(order[:k]),
                                 scheme=scheme)
            k_acc = _accuracy(candidate, eval_x, eval_y, name)
            steps.append({"kept_float": order[:k], "accuracy": k_acc})
            if 100 * (base - k_acc) <= budget_points:
                best, high = (k, candidate, k_acc), k - 1
            else:
                low = k + 1
        if best[1] is None:  # only "everything float" met the budget
            everything = quantize(fp32, calib_feeds, method, exclude=tuple(order),
                                  scheme=scheme)
            best = (len(order), everything, base)
    k, model, acc = best
    return FallbackResult(model, base, acc, order[:k], sensitivity, steps)
