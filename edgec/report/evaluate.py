"""Measure a model on every requested target x precision x backend against its reference.

Every number in a row is measured in this run. A combination that cannot be served here becomes a
row with status "unsupported" and the reason; a combination that breaks becomes "failed".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import edgec.runtime as rt
from edgec.compiler import compile_model
from edgec.errors import EdgecError, UnsupportedError
from edgec.frontend.datasets import load_dataset
from edgec.metrics.accuracy import top1, top1_agreement
from edgec.metrics.compare import errors
from edgec.report import detection, on_board
from edgec.report.host import host_info
from edgec.report.rows import engine_note, latency, row
from edgec.runtime.remote.session import BoardSpec

DEFAULT_BACKENDS = ("tvm", "ort")
HOST, EMULATED = "host", "qemu-user on this host"  # where a row ran ("ran_on"), besides rpc:KEY (HOST:PORT)


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
    from edgec.zoo import registry

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
    from edgec.frontend.loader import load_model, single_input
    from edgec.frontend.reference import Reference

    name = single_input(load_model(path), str(path), "reports need").name
    session = Reference(path, optimized=True)
    return Subject(path.stem, path, "ort", lambda x: next(iter(session.run({name: x}).values())), name,
                   outputs=lambda x: list(session.run({name: x}).values()))


def _run_all(run_one, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run_one(x[i:i + 1]) for i in range(len(x))])


def evaluate(model: str, targets, precisions, dataset: str, out_dir: Path, backends=DEFAULT_BACKENDS,
             warmup: int = 10, iters: int = 100, progress: Callable[[str], None] | None = None,
             emulate: bool | None = None, board: BoardSpec | None = None) -> dict:
    """Build the report dict (contract schema, plus each row's "ran_on"); artifacts land in out_dir/artifacts/.
    tvm rows the `board` runs are measured there (over TVM RPC); other rows this host cannot run natively:
    aarch64 ones under qemu-user when `emulate` (None: when qemu is installed), CUDA ones "unsupported" with
    their compile figures."""
    say = progress or (lambda message: None)
    board_info = on_board.probe(board, targets, backends) if board else None  # before anything is compiled
    subject = prepare_subject(model, out_dir)
    data = load_dataset(dataset, subject.onnx_path, subject.zoo_entry)
    if data.targets is not None:  # boxes: mAP rows (edgec/report/detection.py)
        if board:
            raise UnsupportedError("report --rpc-*: detector rows (mAP, NMS on the host) are measured on this host "
                                   "only; drop --rpc-tracker/--rpc, or bench the detector's artifact on the board")
        return detection.evaluate(subject, data, targets, precisions, backends, out_dir, warmup, iters, say)
    say(f"reference ({subject.framework}) on {len(data.x)} samples")
    ref = np.concatenate([subject.reference(data.x[i:i + 256]) for i in range(0, len(data.x), 256)])
    check_classes(subject.name, ref, data)
    ref_acc = top1(ref, data.y)
    sample = data.x[:1]
    ref_latency, throughput = latency(lambda: subject.reference(sample), warmup, iters)
    rows = [row(subject.framework, "cpu", "fp32", accuracy=ref_acc, top1_agreement=top1_agreement(ref, ref),
                max_abs_err=0.0, mean_abs_err=0.0, latency_ms=ref_latency, throughput_per_s=throughput,
                note="reference", ran_on=HOST)]
    for precision in precisions:
        for target in targets:
            for backend in backends:
                say(f"{backend} {target} {precision}")
                rows.append(_measure(subject, data, ref, backend, target, precision, out_dir, warmup, iters,
                                     calib=dataset, emulate=emulate, board=(board, board_info)))
    host = host_info()
    result = {
        "model": subject.name,
        "dataset": data.name,
        "n_eval": int(len(data.x)),
        "host": host,
        "edgec_version": host["edgec_version"],
        "reference": {"framework": subject.framework, "accuracy": ref_acc},
        "rows": rows,
    }
    if board_info:
        result["board"] = board_info
    return result


def check_classes(name: str, scores: np.ndarray, data) -> None:
    """A model scored on labels it cannot output (a 5-class model on the 10 digits) is an error, not a number."""
    if data.y is None or scores.ndim < 2 or not data.y.size:
        return
    classes, top = scores.shape[1], int(np.max(data.y))
    if top >= classes:
        raise EdgecError(f"{name}: the model outputs {classes} classes, but the {data.name} labels go up to {top}: "
                         f"its accuracy would mean nothing; pass --dataset DATA.npz with labels 0..{classes - 1}")


def _measure(subject, data, ref, backend, target, precision, out_dir, warmup, iters, calib: str,
             emulate: bool | None = None, board: tuple = (None, None)) -> dict:
    """One row. int8 calibrates on `calib`: digits' training split, or the given .npz itself. `board`: (BoardSpec,
    what the board said) or (None, None)."""
    from edgec.quantize.pipeline import Int8Options

    artifact = out_dir / "artifacts" / f"{subject.name}-{backend}-{target}-{precision}.edgec"
    try:
        result = compile_model(subject.onnx_path, target, artifact, backend=backend, precision=precision,
                               int8=Int8Options(calib=calib))
    except UnsupportedError as e:
        return row(backend, target, precision, "unsupported", str(e))
    except Exception as e:  # a report records failures and goes on with the other rows
        return row(backend, target, precision, "failed", f"compile: {e}")
    size = artifact.stat().st_size
    compiled = {"artifact_bytes": size, "compile_s": round(result.seconds, 3)}
    spec, info = board
    where, why_not = ("board", "") if info and on_board.runs_there(result.manifest, info) else \
        runnable_here(result.manifest, emulate)
    if where is None:
        note = "; ".join(n for n in (engine_note(result), f"compiled; not runnable here: {why_not}") if n)
        return row(backend, target, precision, "unsupported", note, **compiled)
    ran_on = {"board": info and f"{info['device']} ({info['address']})", "emulated": EMULATED}.get(where, HOST)
    try:
        if where == "board":
            outs, row_latency, throughput, note = on_board.measure(spec, artifact, data.x, warmup, iters)
        elif where == "emulated":
            outs, row_latency, throughput, note = _emulated(artifact, data.x, warmup, iters)
        else:
            module = rt.load(artifact, device=result.manifest["target"]["device"])
            name = subject.input_name
            outs = _run_all(lambda xb: next(iter(module.run({name: xb}).values())), data.x)
            sample = {name: data.x[:1]}
            row_latency, throughput = latency(lambda: module.run(sample), warmup, iters)
            note = engine_note(result)
    except Exception as e:  # a report records failures and goes on with the other rows
        return row(backend, target, precision, "failed", f"run: {e}", **compiled)
    err = errors(outs, ref)
    quant = result.manifest.get("quantization")
    if quant:
        note = "; ".join(filter(None, [note, f"int8 QDQ ({quant['activations']} activations; {quant['weights']} "
                                             f"weights), {quant['calibration']['method']} calibration on "
                                             f"{quant['calibration']['samples']} samples; layers kept float: "
                                             f"{', '.join(quant['kept_float']) or 'none'}"]))
    return row(backend, target, precision, note=note, accuracy=top1(outs, data.y),
               top1_agreement=top1_agreement(outs, ref), max_abs_err=err.max_abs_err, mean_abs_err=err.mean_abs_err,
               latency_ms=row_latency, throughput_per_s=throughput, ran_on=ran_on, **compiled)


def runnable_here(manifest: dict, emulate: bool | None) -> tuple[str | None, str]:
    """("native" | "emulated" (aarch64 under qemu-user), "") or (None, why this host cannot run it)."""
    from edgec.emulate import EmulationUnavailable
    from edgec.emulate.userland import QEMU, require_tools
    from edgec.runtime.cuda import has_gpu
    from edgec.targets import host_arch, missing_cpu_features

    target = manifest["target"]
    if target.get("device") == "cuda":
        return ("native", "") if has_gpu() else (None, "this host has no NVIDIA GPU")
    if target.get("arch") != host_arch():
        if target.get("arch") == "aarch64" and host_arch() == "x86_64" and emulate is not False:
            try:
                require_tools(QEMU)
                return "emulated", ""
            except EmulationUnavailable as e:
                if emulate:
                    raise
                return None, f"{target['arch']} code on an {host_arch()} host ({e})"
        return None, f"{target['arch']} code on an {host_arch()} host"
    missing = missing_cpu_features(target.get("cpu_features", []))
    return (None, f"this CPU lacks {', '.join(missing)}") if missing else ("native", "")


def _emulated(artifact: Path, x: np.ndarray, warmup: int, iters: int):
    """(outputs on all of x, latency of one sample, calls/s, note) from one run under qemu-user."""
    from edgec import emulate

    run = emulate.run(artifact, [x], warmup=min(warmup, 2), iters=min(iters, 20), timed_rows=1)
    stats = run.latency_ms
    return (run.outputs[0], {k: stats[k] for k in ("p50", "p90", "p99")}, 1e3 / stats["mean"],
            f"run under qemu-user -cpu {run.qemu_cpu} on this x86-64 host: the accuracy is the aarch64 code's, "
            "the latency is emulated, not a board's")
