"""`edgec compile --backend auto`: compile every candidate backend, verify, time, keep the fastest.

Only meaningful where the target is this machine: each candidate artifact is loaded here, checked
against ONNX Runtime running the source model in fp32 on the same real samples a report would use
(`--verify-data`, else the first calibration samples, else digits' first held-out images where the
input takes them; seeded random inputs only when no data fits, and the manifest says so), and timed in
interleaved rounds (so drift on a noisy machine hits every candidate alike). The fastest verified
candidate becomes the artifact; its manifest's `backend_selection` records every candidate's
verdict, error and p50 latency, so the choice can be audited later.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from edgec.backends import CompileOptions, backend_names, get_backend
from edgec.errors import EdgecError, UnsupportedError
from edgec.metrics.compare import Cosine, Elementwise, Exact
from edgec.targets import Target, host_arch, local_cuda_archs, missing_cpu_features, resolve_target

ROUNDS = 5
CALLS_PER_ROUND = 20
FP32_RULE = Elementwise(atol=1e-3, rtol=1e-3, relative_to="max")  # a final output, after every kernel
REDUCED_RULE = Cosine(0.99)  # fp16/int8 outputs against the fp32 reference
VERIFY_SAMPLES = 8  # real samples every candidate is checked on


def check_host_target(target: Target) -> None:
    """Refuse targets this machine cannot run: auto picks by measuring here."""
    here = target.arch == host_arch() and not missing_cpu_features(target.cpu_features)
    if target.device == "cuda":
        here = here and bool(set(target.gpu_archs) & set(local_cuda_archs()))
    if not here:
        raise UnsupportedError(f"--backend auto measures the candidates on this machine, and target "
                               f"'{target.name}' is not this machine; choose --backend {'|'.join(backend_names())}")


def candidates(target: Target, precision: str) -> list[str]:
    """Backends that say they can compile `precision` for `target`."""
    names = []
    for name in backend_names():
        try:
            get_backend(name).check(target, CompileOptions(precision=precision))
        except EdgecError:
            continue
        names.append(name)
    return names


def verify(outputs: list[dict[str, np.ndarray]], reference: list[list[np.ndarray]], precision: str) -> str | None:
    """None when the outputs (one dict per input sample) match the fp32 reference for `precision`;
    else what differs. fp32: FP32_RULE on float outputs, Exact on the others; fp16/int8: REDUCED_RULE on
    float outputs (integer ones, e.g. indices, may legitimately differ)."""
    names = list(outputs[0])
    for index, name in enumerate(names):
        if any(o[name].shape != r[index].shape for o, r in zip(outputs, reference)):
            return (f"output '{name}' has shape {list(outputs[0][name].shape)}, "
                    f"reference {list(reference[0][index].shape)}")
        got = np.concatenate([o[name].ravel() for o in outputs])
        want = np.concatenate([r[index].ravel() for r in reference])
        if got.dtype.kind != "f":
            if precision == "fp32" and not Exact()(got, want):
                return f"output '{name}' differs from the reference"
            continue
        if precision == "fp32":
            result = FP32_RULE(got, want)
            if not result:
                return f"output '{name}': max relative error {result.rel_err:.2e} > {FP32_RULE.rtol:g}"
        else:
            result = REDUCED_RULE(got, want)
            if not result:
                return f"output '{name}': cosine similarity {result.cosine:.4f} < {REDUCED_RULE.min_cosine}"
    return None


def verification_inputs(model, model_path: str, int8=None, verify_data: str | None = None) -> tuple[list[dict], str]:
    """(feeds, what they are): VERIFY_SAMPLES real samples, one feed each (the model's fixed batch where it
    has one): `verify_data` (digits or DATA.npz: its first held-out / stored samples), else the first
    calibration samples, else digits' first held-out images when the input takes them, else random."""
    from edgec.frontend.datasets import load_dataset
    from edgec.frontend.loader import dims_of, graph_inputs

    if verify_data is None and int8 is not None and int8.calib:
        from edgec.quantize.calibration import calibration_inputs

        feeds = calibration_inputs(int8.calib, model, VERIFY_SAMPLES)
        return feeds, f"the first {VERIFY_SAMPLES} calibration samples ({int8.calib})"
    try:
        data = load_dataset(verify_data or "digits", Path(model_path), samples=VERIFY_SAMPLES)
        what = f"the first {VERIFY_SAMPLES} {'held-out ' if data.name == 'digits' else ''}samples of {data.name}"
    except EdgecError:
        if verify_data is not None:
            raise
        data = load_dataset("random", Path(model_path), samples=VERIFY_SAMPLES)
        what = (f"{VERIFY_SAMPLES} seeded random inputs: no real data fits the model's input (pass --verify-data "
                "DATA.npz)")
    inputs = graph_inputs(model)
    batch = dims_of(inputs[0])[0]
    step = batch if isinstance(batch, int) else 1
    x = data.x[:VERIFY_SAMPLES * step].astype(np.float32)
    return [{inputs[0].name: np.ascontiguousarray(x[i:i + step])} for i in range(0, len(x) - step + 1, step)], what


def _interleaved_p50(modules: dict, feeds: dict) -> dict[str, float]:
    from edgec.runtime.bench import time_calls

    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(ROUNDS):
        for name, module in modules.items():
            times[name] += time_calls(lambda m=module: m.run(feeds), warmup=2, iters=CALLS_PER_ROUND)
    return {name: float(np.median(t)) for name, t in times.items()}


def compile_auto(model_path: str | os.PathLike, target: str, output: str | os.PathLike, precision: str = "fp32",
                 input_shapes: dict | None = None, verify_data: str | None = None, **compile_args):
    """Like `compile_model`, choosing the backend by measurement; returns the chosen CompileResult."""
    import edgec.runtime as rt
    from edgec.compiler import compile_model
    from edgec.frontend.loader import load_model
    from edgec.frontend.reference import Reference
    from edgec.runtime.artifact import read_artifact, write_artifact

    start = time.perf_counter()
    model_path = str(model_path)
    tgt = resolve_target(target)
    check_host_target(tgt)
    names = candidates(tgt, precision)
    if not names:
        raise UnsupportedError(f"--backend auto: no backend compiles precision '{precision}' for target '{tgt.name}'")
    source = load_model(model_path, input_shapes)
    reference = Reference(source, optimized=True)
    checks, verified_on = verification_inputs(source, model_path, compile_args.get("int8"), verify_data)
    records: dict[str, dict] = {}
    modules, results = {}, {}
    with tempfile.TemporaryDirectory(prefix="edgec-auto-") as tmp:
        for name in names:
            try:
                result = compile_model(model_path, target, Path(tmp) / f"{name}.edgec", backend=name,
                                       precision=precision, input_shapes=input_shapes, **compile_args)
                module = rt.load(result.path, device="cuda" if tgt.device == "cuda" else "cpu")
            except EdgecError as e:
                records[name] = {"verdict": "failed", "error": str(e)}
                continue
            problem = verify([module.run(f) for f in checks], [list(reference.run(f).values()) for f in checks],
                             precision)
            records[name] = {"verdict": "rejected", "error": problem} if problem else {"verdict": "verified"}
            results[name] = result
            if not problem:
                modules[name] = module
        if not modules:
            reasons = "; ".join(f"{n}: {r['error']}" for n, r in records.items())
            raise EdgecError(f"--backend auto: no candidate backend compiled and verified ({reasons})")
        for name, p50 in _interleaved_p50(modules, checks[0]).items():
            records[name]["p50_ms"] = round(p50, 4)
            records[name]["compile_s"] = round(results[name].seconds, 2)
        chosen = min(modules, key=lambda n: records[n]["p50_ms"])
        manifest, files = read_artifact(results[chosen].path)
        selection = {"chosen": chosen, "method": f"median of {ROUNDS}x{CALLS_PER_ROUND} interleaved calls on "
                                                 "this host, after verification against ONNX Runtime fp32",
                     "verified_on": verified_on, "candidates": records}
        manifest = {k: v for k, v in manifest.items() if k not in ("files", "schema_version")}
        written = write_artifact(output, dict(manifest, backend_selection=selection), files)
        result = results[chosen]
        result.path, result.manifest, result.seconds = Path(output), written, time.perf_counter() - start
        return result
