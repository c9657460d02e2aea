"""Tensor-by-tensor comparison of a model under test against a reference, on the same inputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from edgec.errors import EdgecError
from edgec.metrics.compare import Cosine, for_precision


@dataclass
class TensorDiff:
    tensor: str
    node: str
    op: str
    index: int  # topological position of the producing node in the reference graph
    shape: list
    max_abs_err: float | None
    mean_abs_err: float | None
    rel_err: float | None
    cosine: float | None
    exceeds: bool

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class CompareResult:
    test: dict
    reference: dict
    tensors: list[TensorDiff]
    unmatched: dict
    inputs: dict
    tolerance: dict

    @property
    def first_divergent(self) -> TensorDiff | None:
        return next((t for t in self.tensors if t.exceeds), None)

    def to_json(self) -> dict:
        first = self.first_divergent
        return {
            "first_divergent": None if first is None else {k: getattr(first, k) for k in
                                                           ("tensor", "node", "op", "max_abs_err", "cosine")},
            "test": self.test,
            "reference": self.reference,
            "tensors": [t.to_json() for t in self.tensors],
            "unmatched": self.unmatched,
            "inputs": self.inputs,
            "tolerance": self.tolerance,
        }


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def tensor_diff(name: str, producer: tuple[str, str, int], got: list[np.ndarray], want: list[np.ndarray],
                rule) -> TensorDiff:
    """`rule` (edgec.metrics.compare) applied to `got` against `want`, all samples as one tensor."""
    node, op, index = producer
    shape = list(want[0].shape)
    if any(g.shape != w.shape for g, w in zip(got, want)):
        return TensorDiff(name, node, op, index, shape, None, None, None, None, True)
    result = rule(np.concatenate([g.ravel() for g in got]), np.concatenate([w.ravel() for w in want]))
    return TensorDiff(name, node, op, index, shape, result.max_abs_err, result.mean_abs_err, result.rel_err,
                      result.cosine, not result)


def _feeds(dataset, name: str, shape: list) -> list[dict]:
    batch = shape[0] if shape and isinstance(shape[0], int) else 1
    x = dataset.x
    if len(x) < batch:
        raise EdgecError(f"the model takes a fixed batch of {batch}, the dataset has only {len(x)} samples")
    return [{name: np.ascontiguousarray(x[i:i + batch])} for i in range(0, len(x) - batch + 1, batch)]


def _pick_dataset(spec: str, path: Path, samples: int):
    from edgec.frontend.datasets import load_dataset

    if spec != "auto":
        data = load_dataset(spec, path, samples=samples)
    else:
        try:
            data = load_dataset("digits", path, samples=samples)
        except EdgecError:
            data = load_dataset("random", path, samples=samples)
    data.x = data.x[:samples]
    return data


def _quantized_for(model: onnx.ModelProto, backend: str, int8) -> tuple[onnx.ModelProto, dict]:
    """`model` quantized to QDQ as `edgec compile --precision int8` does it for this host's CPU and `backend`."""
    from edgec.backends import get_backend
    from edgec.quantize.int8 import scheme_for
    from edgec.quantize.pipeline import Int8Options, quantize_int8
    from edgec.targets import resolve_target

    scheme = scheme_for(resolve_target("cpu"), get_backend(backend).int8_symmetric_activations)
    return quantize_int8(model, int8 or Int8Options(), scheme)


def compare(model_path: str, backends=("tvm", "ort"), precision: str = "fp32", reference_path: str | None = None,
            dataset: str = "auto", samples: int = 8, atol: float = 1e-4, rtol: float = 1e-3,
            min_cosine: float = 0.999, int8=None) -> CompareResult:
    """Run MODEL on backends[0] (after edgec's passes, as `compile` would) and the reference (MODEL, or
    `reference_path`) on backends[1]; compare every tensor both graphs name, in topological order.
    precision int8 quantizes MODEL as compile does (`int8`: edgec.quantize.pipeline.Int8Options, its
    calibration data required); fp16 compiles it with the backend's fp16 conversion. Graphs with
    QuantizeLinear/DequantizeLinear are judged by cosine similarity (see tensor_diff)."""
    from edgec.compiler import run_on_host
    from edgec.frontend.expose import exposed, producers
    from edgec.frontend.loader import dims_of, load_model, single_input
    from edgec.frontend.reference import run_reference
    from edgec.passes import DEFAULT_PIPELINE, PassContext, run_pipeline

    if len(backends) != 2:
        raise EdgecError(f"--backends takes two backends, TEST,REFERENCE (e.g. tvm,ort); got {','.join(backends)}")
    if samples < 1:
        raise EdgecError(f"--samples {samples}: must be >= 1")
    test_backend, ref_backend = backends
    ref_path = reference_path or model_path
    test_model = load_model(model_path)
    ref_model = load_model(ref_path)
    ref_input = single_input(ref_model, ref_path, "compare feeds")
    name = ref_input.name
    if single_input(test_model, model_path, "compare feeds").name != name:
        raise EdgecError(f"{model_path} and {ref_path} name their inputs differently; compare needs the same input")
    data = _pick_dataset(dataset, Path(ref_path), samples)
    feeds = _feeds(data, name, dims_of(ref_input))

    optimized, _ = run_pipeline(test_model, DEFAULT_PIPELINE, PassContext(model_path=model_path, validate=False))
    quantization = None
    if precision == "int8":  # calibrated before exposing, as compile quantizes the optimized graph
        optimized, quantization = _quantized_for(optimized, test_backend, int8)
    test_exposed, test_names = exposed(optimized)
    compiled_as = "fp32" if precision == "int8" else precision  # an int8 graph is QDQ by now
    test_runs = run_on_host(test_exposed, test_backend, feeds, model_path, compiled_as)
    ref_exposed, ref_names = exposed(ref_model)
    if ref_backend == "ort":
        ref_runs = run_reference(ref_exposed, feeds)
    else:
        ref_optimized, _ = run_pipeline(ref_model, DEFAULT_PIPELINE, PassContext(model_path=ref_path, validate=False))
        ref_exposed, ref_names = exposed(ref_optimized)
        ref_runs = run_on_host(ref_exposed, ref_backend, feeds, ref_path)

    where = producers(ref_exposed)
    common = [n for n in ref_names if n in set(test_names)]
    quantized = is_quantized(test_model) or is_quantized(ref_model) or precision == "int8"
    rule = for_precision("int8" if quantized else precision, atol, rtol, min_cosine)
    cosine_bar = rule.min_cosine if isinstance(rule, Cosine) else None
    diffs = [tensor_diff(n, where[n], [r[n] for r in test_runs], [r[n] for r in ref_runs], rule)
             for n in sorted(common, key=lambda n: where[n][2])]
    return CompareResult(
        test={"model": str(model_path), "backend": test_backend, "precision": precision,
              "passes": list(DEFAULT_PIPELINE), "quantization": quantization},
        reference={"model": str(ref_path), "backend": ref_backend, "precision": "fp32"},
        tensors=diffs,
        unmatched={"test_only": sorted(set(test_names) - set(common)),
                   "reference_only": sorted(set(ref_names) - set(common))},
        inputs={"dataset": data.name, "samples": len(data.x), "input": name,
                "shape": list(data.x.shape[1:]), "dtype": str(data.x.dtype)},
        tolerance={"atol": atol, "rtol": rtol, "min_cosine": cosine_bar,
                   "mode": "cosine (quantized graph)" if quantized else f"cosine ({precision})" if cosine_bar else
                   "elementwise"},
    )
