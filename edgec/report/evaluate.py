"""Measure a model on every requested target x precision x backend against its reference.

Every number in a row is measured in this run. A combination that cannot be served here becomes a
row with status "unsupported" and the reason; a combination that breaks becomes "failed".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgec.errors import EdgecError, UnsupportedError
from edgec.report.datasets import load_dataset
from edgec.report.host import host_info
from edgec.runtime.bench import latency_stats, time_calls

DEFAULT_BACKENDS = ("tvm", "ort")


@dataclass
class Subject:
    """The model under test and its reference implementation (first output for a batch)."""

    name: str
    onnx_path: Path
    framework: str
    reference: Callable[[np.ndarray], np.ndarray]
    input_name: str
    zoo_entry: object = None
    outputs: Callable[[np.ndarray], list[np.ndarray]] | None = None  # every output (detectors)


def prepare_subject(model: str, out_dir: Path) -> Subject:
    """A zoo name is exported (trained weights) into out_dir; an .onnx path is used as it is."""
    path = Path(model)
    if path.suffix == ".onnx" or path.exists():
        return _onnx_subject(path)
    import torch

    from edgec.frontend.export import export_onnx, resolve_exportable
    from models import registry

    try:
        entry = registry.get(model)
    except KeyError as e:
        raise EdgecError(f"{e.args[0]}; or pass a path to an .onnx file") from None
    net, shape, outputs = resolve_exportable(model)
    onnx_path = export_onnx(net, shape, out_dir / f"{model}.onnx", output_names=outputs)

    @torch.no_grad()
    def reference(x: np.ndarray) -> np.ndarray:
        out = net(torch.from_numpy(x))
        return (out[0] if isinstance(out, (tuple, list)) else out).numpy()

    @torch.no_grad()
    def outputs(x: np.ndarray) -> list[np.ndarray]:
        out = net(torch.from_numpy(x))
        return [o.numpy() for o in out] if isinstance(out, (tuple, list)) else [out.numpy()]

    return Subject(model, onnx_path, "pytorch", reference, "input", entry, outputs)


def _onnx_subject(path: Path) -> Subject:
    import onnxruntime as ort

    from edgec.frontend.loader import graph_inputs, load_model

    model = load_model(path)
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise EdgecError(f"{path}: reports need a single-input model; this one has {len(inputs)} inputs")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = inputs[0].name
    return Subject(path.stem, path, "onnxruntime", lambda x: session.run(None, {name: x})[0], name,
                   outputs=lambda x: session.run(None, {name: x}))


def accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Top-1 accuracy: argmax over axis 1 against labels (also per-pixel for N x C x H x W outputs)."""
    if labels is None or logits.ndim < 2 or logits.shape[:1] + logits.shape[2:] != labels.shape:
        return None
    return float((logits.argmax(axis=1) == labels).mean())


def _agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean()) if a.ndim >= 2 else None


def _row(backend, target, precision, status="ok", note="", **values) -> dict:
    row = {"backend": backend, "target": target, "precision": precision, "accuracy": None, "map_50_95": None,
           "top1_agreement": None, "max_abs_err": None, "mean_abs_err": None, "latency_ms": None,
           "throughput_per_s": None, "artifact_bytes": None, "compile_s": None, "status": status, "note": note}
    row.update(values)
    return row


def _latency(fn, warmup: int, iters: int) -> tuple[dict, float]:
    stats = latency_stats(time_calls(fn, warmup, iters))
    return {k: stats[k] for k in ("p50", "p90", "p99")}, 1e3 / stats["mean"]


def _run_all(run_one, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run_one(x[i:i + 1]) for i in range(len(x))])


def evaluate(model: str, targets, precisions, dataset: str, out_dir: Path, backends=DEFAULT_BACKENDS,
             warmup: int = 10, iters: int = 100, progress: Callable[[str], None] | None = None) -> dict:
    """Build the report dict (contract schema); artifacts land in out_dir/artifacts/."""
    import edgec.runtime as rt
    from edgec.compiler import compile_model

    say = progress or (lambda message: None)
    subject = prepare_subject(model, out_dir)
    data = load_dataset(dataset, subject.onnx_path, subject.zoo_entry)
    if data.targets is not None:  # boxes: mAP rows (edgec/report/detection.py)
        from edgec.report import detection

        return detection.evaluate(subject, data, targets, precisions, backends, out_dir, warmup, iters, say)
    say(f"reference ({subject.framework}) on {len(data.x)} samples")
    ref = np.concatenate([subject.reference(data.x[i:i + 256]) for i in range(0, len(data.x), 256)])
    ref_acc = accuracy(ref, data.y)
    sample = data.x[:1]
    latency, throughput = _latency(lambda: subject.reference(sample), warmup, iters)
    rows = [_row(subject.framework, "cpu", "fp32", accuracy=ref_acc, top1_agreement=_agreement(ref, ref),
                 max_abs_err=0.0, mean_abs_err=0.0, latency_ms=latency, throughput_per_s=throughput,
                 note="reference")]
    for precision in precisions:
        for target in targets:
            for backend in backends:
                say(f"{backend} {target} {precision}")
                rows.append(_measure(rt, compile_model, subject, data, ref, backend, target, precision, out_dir,
                                     warmup, iters, calib=dataset))
    host = host_info()
    return {
        "model": subject.name,
        "dataset": data.name,
        "n_eval": int(len(data.x)),
        "host": host,
        "edgec_version": host["edgec_version"],
        "reference": {"framework": subject.framework, "accuracy": ref_acc},
        "rows": rows,
    }


def _measure(rt, compile_model, subject, data, ref, backend, target, precision, out_dir, warmup, iters,
             calib: str) -> dict:
    """One row. int8 calibrates on `calib`: digits' training split, or the given .npz itself."""
    from edgec.quantize.pipeline import Int8Options

    artifact = out_dir / "artifacts" / f"{subject.name}-{backend}-{target}-{precision}.edgec"
    try:
        result = compile_model(subject.onnx_path, target, artifact, backend=backend, precision=precision,
                               int8=Int8Options(calib=calib))
    except UnsupportedError as e:
        return _row(backend, target, precision, "unsupported", str(e))
    except Exception as e:  # a report records failures and goes on with the other rows
        return _row(backend, target, precision, "failed", f"compile: {e}")
    size = artifact.stat().st_size
    try:
        module = rt.load(artifact)
    except rt.ArtifactError as e:
        return _row(backend, target, precision, "unsupported", f"compiled, cannot run on this host: {e}",
                    artifact_bytes=size, compile_s=result.seconds)
    try:
        name = subject.input_name
        outs = _run_all(lambda xb: next(iter(module.run({name: xb}).values())), data.x)
        sample = {name: data.x[:1]}
        latency, throughput = _latency(lambda: module.run(sample), warmup, iters)
    except Exception as e:
        return _row(backend, target, precision, "failed", f"run: {e}", artifact_bytes=size,
                    compile_s=result.seconds)
    err = np.abs(outs.astype(np.float64) - ref.astype(np.float64))
    quant = result.manifest.get("quantization")
    note = "" if not quant else (f"int8 QDQ ({quant['activations']} activations; {quant['weights']} weights), "
                                 f"{quant['calibration']['method']} calibration on "
                                 f"{quant['calibration']['samples']} samples; layers kept float: "
                                 f"{', '.join(quant['kept_float']) or 'none'}")
    return _row(backend, target, precision, note=note, accuracy=accuracy(outs, data.y),
                top1_agreement=_agreement(outs, ref),
                max_abs_err=float(err.max()), mean_abs_err=float(err.mean()), latency_ms=latency,
                throughput_per_s=throughput, artifact_bytes=size, compile_s=round(result.seconds, 3))
