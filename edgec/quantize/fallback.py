"""Accuracy-aware int8: keep the most sensitive layers in float until the accuracy drop fits a budget.

Everything is measured on validation samples (never the held-out split a report scores) and by a
runner, `run(model, feeds)`: the backend being compiled, so what is kept float is what that backend's
int8 kernels lose, not ONNX Runtime's. Sensitivity comes from `edgec.compare`'s machinery: the fp32
model (on ONNX Runtime, the reference) and the int8 model (on the runner) run on the same inputs with
every intermediate exposed, and each quantizable layer is scored by how much cosine similarity to fp32
it loses itself (at its output, beyond what its inputs had already lost). The k most sensitive layers
are returned to float, with k found by bisection (re-quantizing and measuring top-1 accuracy at each
probe): the smallest k with `fp32 accuracy - int8 accuracy <= budget` (points). k = all layers is the
fp32 model itself, so the budget can always be met.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from edgec.frontend.expose import exposed
from edgec.frontend.loader import single_input
from edgec.frontend.reference import run_reference
from edgec.metrics.accuracy import top1
from edgec.metrics.compare import errors
from edgec.quantize.int8 import Int8Scheme, quantizable_nodes, quantize


@dataclass
class FallbackResult:
    model: onnx.ModelProto
    fp32_accuracy: float
    int8_accuracy: float
    kept_float: list[str]
    sensitivity: dict[str, float]  # unit ("/3/Conv+/4/Relu": nodes the quantizer fused) -> cosine lost
    steps: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"fp32_accuracy": self.fp32_accuracy, "int8_accuracy": self.int8_accuracy,
                "kept_float": self.kept_float, "steps": self.steps,
                "sensitivity": {k: round(v, 8) for k, v in self.sensitivity.items()}}


def onnxruntime_runner(model: onnx.ModelProto, feeds: list[dict]) -> list[dict[str, np.ndarray]]:
    """The default runner: ONNX Runtime's optimized session on this CPU (QDQ fused to integer kernels)."""
    return run_reference(model, feeds, optimized=True)


def _batches(model: onnx.ModelProto, x: np.ndarray, name: str) -> list[dict]:
    """x in feeds of 64 where the batch is symbolic, else of the model's fixed batch."""
    from edgec.frontend.loader import dims_of, graph_inputs

    batch = dims_of(graph_inputs(model)[0])[0]
    if not isinstance(batch, int):
        return [{name: np.ascontiguousarray(x[i:i + 64])} for i in range(0, len(x), 64)]
    return [{name: np.ascontiguousarray(x[i:i + batch])} for i in range(0, len(x) - batch + 1, batch)]


def _accuracy(run, model: onnx.ModelProto, x: np.ndarray, y: np.ndarray, name: str) -> float:
    feeds = _batches(model, x, name)
    logits = np.concatenate([next(iter(out.values())) for out in run(model, feeds)])
    return top1(logits, y[:len(logits)])


def _dequantized_names(int8: onnx.ModelProto) -> dict[str, str]:
    """fp32 tensor name -> the name of its QuantizeLinear -> DequantizeLinear round trip in `int8`."""
    quantized = {n.output[0]: n.input[0] for n in int8.graph.node if n.op_type == "QuantizeLinear"}
    return {quantized[n.input[0]]: n.output[0] for n in int8.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in quantized}


def quantization_units(fp32: onnx.ModelProto, int8: onnx.ModelProto) -> list[list[str]]:
    """The quantizable nodes grouped as the quantizer fused them: a node whose outputs the int8 graph no
    longer has (a Conv or Gemm whose ReLU took over its output quantizer) is one unit with the nodes
    that read it, since only their shared output is observed and keeping one float without the other
    changes nothing. Units in graph order, each in graph order."""
    kept = {o for n in int8.graph.node for o in n.output}
    names = quantizable_nodes(fp32)
    unit = {name: name for name in names}

    def root(name: str) -> str:
        while unit[name] != name:
            name = unit[name]
        return name

    readers = {}
    for node in fp32.graph.node:
        for i in node.input:
            readers.setdefault(i, []).append(node.name)
    for node in fp32.graph.node:
        if node.name in unit and not any(o in kept for o in node.output):
            for reader in (r for o in node.output for r in readers.get(o, []) if r in unit):
                unit[root(reader)] = root(node.name)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(root(name), []).append(name)
    return list(groups.values())


def layer_sensitivity(fp32: onnx.ModelProto, int8: onnx.ModelProto, feeds: list[dict],
                      run=onnxruntime_runner) -> dict[tuple[str, ...], float]:
    """{unit: cosine lost across it} for each unit of `quantization_units`: the loss of its (re-quantized)
    outputs minus the largest loss among its (re-quantized) inputs from outside it, each measured against
    fp32 (int8 on `run`, fp32 on ONNX Runtime)."""
    ref_model, _ = exposed(fp32)
    q_model, _ = exposed(int8)
    ref = run_reference(ref_model, feeds)
    got = run(q_model, feeds)
    as_quantized = _dequantized_names(int8)
    lost: dict[str, float] = {}

    def loss(tensor: str) -> float | None:
        """1 - cosine of what consumers see in the int8 model; None where the int8 model lacks the tensor."""
        seen = as_quantized.get(tensor, tensor)
        if tensor not in lost:
            lost[tensor] = None
            if tensor in ref[0] and seen in got[0]:
                d = errors(np.concatenate([g[seen].ravel() for g in got]),
                           np.concatenate([r[tensor].ravel() for r in ref]))
                lost[tensor] = 1.0 - (d.cosine if d.cosine is not None else 0.0)
        return lost[tensor]

    nodes = {n.name: n for n in fp32.graph.node}
    sensitivity = {}
    for unit in quantization_units(fp32, int8):
        made = {o for name in unit for o in nodes[name].output}
        outputs = [v for v in (loss(o) for o in made) if v is not None]
        inputs = [v for v in (loss(i) for name in unit for i in nodes[name].input if i and i not in made)
                  if v is not None]
        sensitivity[tuple(unit)] = max(outputs, default=0.0) - max(inputs, default=0.0)
    return sensitivity


def quantize_within_budget(fp32: onnx.ModelProto, calib_feeds: list[dict], val_x: np.ndarray,
                           val_y: np.ndarray, budget_points: float, method: str = "minmax",
                           scheme: Int8Scheme = Int8Scheme(), run=None) -> FallbackResult:
    """Quantize, then return units to float (most sensitive first) until the drop, measured with `run`
    (default ONNX Runtime) on the validation samples, is within budget."""
    run = run or onnxruntime_runner
    name = single_input(fp32, "<model>", "int8 quantization takes").name
    base = _accuracy(run, fp32, val_x, val_y, name)
    int8 = quantize(fp32, calib_feeds, method, scheme=scheme)
    acc = _accuracy(run, int8, val_x, val_y, name)
    steps = [{"kept_float": [], "accuracy": acc}]
    sensitivity = layer_sensitivity(fp32, int8, [{name: val_x[i:i + 1]} for i in range(min(32, len(val_x)))], run)
    order = sorted(sensitivity, key=lambda u: -sensitivity[u])

    def first(k: int) -> list[str]:
        return [n for unit in order[:k] for n in unit]

    best = (0, int8, acc)
    if 100 * (base - acc) > budget_points:
        low, high = 1, len(order)  # invariant: k = high meets the budget (everything float)
        best = (high, None, base)
        while low <= high:
            k = (low + high) // 2
            candidate = quantize(fp32, calib_feeds, method, exclude=tuple(first(k)), scheme=scheme)
            k_acc = _accuracy(run, candidate, val_x, val_y, name)
            steps.append({"kept_float": first(k), "accuracy": k_acc})
            if 100 * (base - k_acc) <= budget_points:
                best, high = (k, candidate, k_acc), k - 1
            else:
                low = k + 1
        if best[1] is None:  # only "everything float" met the budget
            best = (len(order), quantize(fp32, calib_feeds, method, exclude=tuple(first(len(order))), scheme=scheme),
                    base)
    k, model, acc = best
    return FallbackResult(model, base, acc, first(k), {"+".join(u): v for u, v in sensitivity.items()}, steps)
