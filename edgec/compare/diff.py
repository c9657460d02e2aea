"""Tensor-by-tensor comparison of a model under test against a reference, on the same inputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from edgec.compare import capture
from edgec.errors import EdgecError


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


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two flat float64 vectors; 1.0 for two zero vectors, 0.0 for one."""
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms > 0 else float(np.array_equal(a, b))


def tensor_diff(name: str, producer: tuple[str, str, int], got: list[np.ndarray], want: list[np.ndarray],
                atol: float, rtol: float, min_cosine: float | None = None) -> TensorDiff:
    """Errors of `got` against `want` over all samples. A float comparison exceeds when any
    |got-want| > atol + rtol*|want|; a quantized one (min_cosine given) when the cosine similarity of
    the two tensors falls below min_cosine. Int8 paths legitimately differ by rounding steps that grow
    through the layers (one step before a sigmoid is several after it), so elementwise tolerances
    would flag every layer; a broken scale or weight drops the cosine far below (e.g. 0.33)."""
    node, op, index = producer
    shape = list(want[0].shape)
    if any(g.shape != w.shape for g, w in zip(got, want)):
        return TensorDiff(name, node, op, index, shape, None, None, None, None, True)
    a = np.concatenate([g.astype(np.float64).ravel() for g in got])
    b = np.concatenate([w.astype(np.float64).ravel() for w in want])
    if a.size == 0:
        return TensorDiff(name, node, op, index, shape, 0.0, 0.0, 0.0, 1.0, False)
    err = np.abs(a - b)
    scale = np.abs(b).max()
    cosine = cosine_similarity(a, b)
    if min_cosine is None:
        exceeds = bool((err > atol + rtol * np.abs(b)).any())
    else:
        exceeds = cosine < min_cosine
    exceeds = exceeds or not bool(np.isfinite(err).all())
    return TensorDiff(name, node, op, index, shape, float(err.max()), float(err.mean()),
                      float(err.max() / scale) if scale > 0 else float(err.max()), cosine, exceeds)


def _feeds(dataset, name: str, shape: list) -> list[dict]:
    batch = shape[0] if shape and isinstance(shape[0], int) else 1
    x = dataset.x
    if len(x) < batch:
        raise EdgecError(f"the model takes a fixed batch of {batch}, the dataset has only {len(x)} samples")
    return [{name: np.ascontiguousarray(x[i:i + batch])} for i in range(0, len(x) - batch + 1, batch)]


def _pick_dataset(spec: str, path: Path, samples: int):
    from edgec.report.datasets import load_dataset

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
    from edgec.frontend.loader import dims_of, graph_inputs, load_model
    from edgec.passes import DEFAULT_PIPELINE, PassContext, run_pipeline

    if len(backends) != 2:
        raise EdgecError(f"--backends takes two backends, TEST,REFERENCE (e.g. tvm,ort); got {','.join(backends)}")
    if samples < 1:
        raise EdgecError(f"--samples {samples}: must be >= 1")
    test_backend, ref_backend = backends
    ref_path = reference_path or model_path
    test_model = load_model(model_path)
    ref_model = load_model(ref_path)
    name = capture.input_name(ref_model, ref_path)
    if capture.input_name(test_model, model_path) != name:
        raise EdgecError(f"{model_path} and {ref_path} name their inputs differently; compare needs the same input")
    data = _pick_dataset(dataset, Path(ref_path), samples)
    feeds = _feeds(data, name, dims_of(graph_inputs(ref_model)[0]))

    optimized, _ = run_pipeline(test_model, DEFAULT_PIPELINE, PassContext(model_path=model_path, validate=False))
    quantization = None
    if precision == "int8":  # calibrated before exposing, as compile quantizes the optimized graph
        optimized, quantization = _quantized_for(optimized, test_backend, int8)
    test_exposed, test_names = capture.exposed(optimized)
    compiled_as = "fp32" if precision == "int8" else precision  # an int8 graph is QDQ by now
    test_runs = capture.run_backend(test_exposed, test_backend, compiled_as, feeds, model_path)
    ref_exposed, ref_names = capture.exposed(ref_model)
    if ref_backend == "ort":
        ref_runs = capture.run_onnxruntime(ref_exposed, feeds)
    else:
        ref_optimized, _ = run_pipeline(ref_model, DEFAULT_PIPELINE, PassContext(model_path=ref_path, validate=False))
        ref_exposed, ref_names = capture.exposed(ref_optimized)
        ref_runs = capture.run_backend(ref_exposed, ref_backend, "fp32", feeds, ref_path)

    where = capture.producers(ref_exposed)
    common = [n for n in ref_names if n in set(test_names)]
    quantized = is_quantized(test_model) or is_quantized(ref_model) or precision == "int8"
    reduced = quantized or precision == "fp16"  # rounding steps grow through the layers: judged by cosine
    cosine_bar = min_cosine if reduced else None
    diffs = [tensor_diff(n, where[n], [r[n] for r in test_runs], [r[n] for r in ref_runs], atol, rtol,
                         cosine_bar) for n in sorted(common, key=lambda n: where[n][2])]
    return CompareResult(
        test={"model": str(model_path), "backend": test_backend, "precision": precision, "passes": list(DEFAULT_PIPELINE),
              "quantization": quantization},
        reference={"model": str(ref_path), "backend": ref_backend, "precision": "fp32"},
        tensors=diffs,
        unmatched={"test_only": sorted(set(test_names) - set(common)),
                   "reference_only": sorted(set(ref_names) - set(common))},
        inputs={"dataset": data.name, "samples": len(data.x), "input": name,
                "shape": list(data.x.shape[1:]), "dtype": str(data.x.dtype)},
        tolerance={"atol": atol, "rtol": rtol, "min_cosine": cosine_bar,
                   "mode": "cosine (quantized graph)" if quantized else "cosine (fp16)" if reduced else "elementwise"},
    )
