"""Latency measurement of a loaded Module: warm-up, timed iterations, percentiles, peak RSS."""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from edgec.errors import EdgecError
from edgec.metrics.compare import Elementwise
from edgec.runtime.inputs import random_inputs

REFERENCE_ATOL = 1e-4  # max abs difference allowed from a host build (--reference) of outputs computed elsewhere


def input_shapes(inputs, batch: int | None = None, shapes: dict | None = None) -> dict[str, tuple[int, ...]]:
    """The concrete shape of each of [(name, shape, dtype)]: `shapes[name]` where given (it must keep the
    artifact's fixed dims), else dim 0 from `batch` when symbolic (default 1) and every other symbolic dim 1.
    A fixed batch other than `batch` is an error naming the compile option that changes it."""
    shapes = dict(shapes or {})
    if None in shapes:  # --input-shape DIMS without a name: the only input
        if len(inputs) != 1:
            raise EdgecError(f"the artifact has {len(inputs)} inputs ({', '.join(n for n, _, _ in inputs)}); "
                             "name one: --input-shape NAME=DIMS")
        shapes[inputs[0][0]] = shapes.pop(None)
    unknown = set(shapes) - {name for name, _, _ in inputs}
    if unknown:
        raise EdgecError(f"--input-shape names {', '.join(sorted(unknown))}, but the artifact's inputs are "
                         f"{', '.join(name for name, _, _ in inputs)}")
    out = {}
    for name, shape, _ in inputs:
        if name in shapes:
            given = tuple(shapes[name])
            if len(given) != len(shape) or any(isinstance(d, int) and d != g for d, g in zip(shape, given)):
                raise EdgecError(f"--input-shape {name}={'x'.join(map(str, given))} does not fit the artifact's "
                                 f"input {name}: {'x'.join(map(str, shape))} (only its symbolic dims can be set)")
            out[name] = given
            continue
        if batch is not None and shape and isinstance(shape[0], int) and shape[0] != batch:
            raise EdgecError(f"input '{name}' was compiled with a fixed batch of {shape[0]}; --batch {batch} needs "
                             f"an artifact compiled with --input-shape {name}={batch}x"
                             + "x".join(str(x) for x in shape[1:]))
        out[name] = tuple(d if isinstance(d, int) else (batch or 1) if axis == 0 else 1 for axis, d in enumerate(shape))
    return out


def make_inputs(inputs, batch: int | None = None, seed: int = 0, shapes: dict | None = None) -> dict[str, np.ndarray]:
    """Random inputs (edgec.runtime.inputs) of the shapes `input_shapes` gives."""
    concrete = input_shapes(inputs, batch, shapes)
    return random_inputs([(name, concrete[name], dtype) for name, _, dtype in inputs], seed=seed)


def latency_stats(times_ms: list[float]) -> dict[str, float]:
    t = np.asarray(times_ms, dtype=np.float64)
    return {"mean": float(t.mean()), "p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)),
            "p99": float(np.percentile(t, 99)), "min": float(t.min()), "max": float(t.max())}


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def check_counts(warmup: int, iters: int) -> None:
    """The bench arguments, checked before anything is loaded."""
    if iters < 1 or warmup < 0:
        raise EdgecError(f"--iters must be >= 1 and --warmup >= 0 (got iters={iters}, warmup={warmup})")


def time_calls(fn, warmup: int, iters: int, progress=None) -> list[float]:
    """Call fn() warmup times untimed, then iters times; return each timed call in milliseconds."""
    check_counts(warmup, iters)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
        if progress:
            progress()
    return times


def benchmark(module, warmup: int = 10, iters: int = 100, batch: int | None = None, progress=None,
              shapes: dict | None = None) -> dict:
    """Time the module on fixed random inputs; the dict follows the contract's `bench --json` (plus
    "input_shapes", what was fed). On a GPU the inputs are copied to the device once and each call is timed
    to the device's completion (`Module.bind`); on the CPU each call is a full `module.run`."""
    feeds = make_inputs(module.inputs, batch, shapes=shapes)
    first_shape = module.inputs[0][1] if module.inputs else ()
    batch_size = batch or (first_shape[0] if first_shape and isinstance(first_shape[0], int) else 1)
    call = module.bind(feeds) if module.device.startswith("cuda") else lambda: module.run(feeds)
    times = time_calls(call, warmup, iters, progress)
    stats = latency_stats(times)
    target = module.manifest["target"]
    return {
        "artifact": module.path,
        "backend": module.backend,
        "target": target["name"],
        "precision": module.manifest.get("precision", "fp32"),
        "device": module.device,
        "batch": int(batch_size),
        "iters": iters,
        "latency_ms": stats,
        "throughput_per_s": batch_size * 1e3 / stats["mean"],
        "peak_rss_mb": peak_rss_mb(),
        "input_shapes": {name: list(x.shape) for name, x in feeds.items()},
    }


def load_reference(path, manifest: dict):
    """`--reference`: a host build of the same model as the artifact with `manifest`, loaded here."""
    import edgec.runtime as rt

    ref = rt.load(path)
    want = [(o["name"], tuple(o["shape"])) for o in manifest["outputs"]]
    if [(name, shape) for name, shape, _ in ref.outputs] != want:
        raise EdgecError(f"{path}: outputs {ref.outputs} differ from the benched artifact's {want}; pass a build "
                         "of the same model for this host (--target cpu)")
    return ref


def compare_to_reference(outputs: list[np.ndarray], reference, feeds: dict) -> dict:
    """Run `reference` (a loaded host build) on `feeds`; how far `outputs`, computed elsewhere, are from it."""
    match = Elementwise(atol=REFERENCE_ATOL, rtol=0.0)
    results = [match(a, b) for a, b in zip(outputs, reference.run(feeds).values(), strict=True)]
    err = max(r.max_abs_err if r.max_abs_err is not None else float("inf") for r in results)
    return {"artifact": reference.path, "target": reference.manifest["target"]["name"], "max_abs_err": err,
            "atol": REFERENCE_ATOL, "within_atol": all(results)}
