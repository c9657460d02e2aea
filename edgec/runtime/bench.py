"""Latency measurement of a loaded Module: warm-up, timed iterations, percentiles, peak RSS."""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from edgec.errors import EdgecError
from edgec.runtime.inputs import random_inputs


def make_inputs(inputs, batch: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for [(name, shape, dtype)] (edgec.runtime.inputs): symbolic dims take `batch` (default 1);
    a fixed batch other than `batch` is an error naming the compile option that changes it."""
    for name, shape, _ in inputs:
        if batch is not None and shape and isinstance(shape[0], int) and shape[0] != batch:
            raise EdgecError(f"input '{name}' was compiled with a fixed batch of {shape[0]}; --batch {batch} needs "
                             f"an artifact compiled with --input-shape {name}={batch}x"
                             + "x".join(str(x) for x in shape[1:]))
    return random_inputs(inputs, symbolic=batch or 1, seed=seed)


def latency_stats(times_ms: list[float]) -> dict[str, float]:
    t = np.asarray(times_ms, dtype=np.float64)
    return {"mean": float(t.mean()), "p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)),
            "p99": float(np.percentile(t, 99)), "min": float(t.min()), "max": float(t.max())}


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def time_calls(fn, warmup: int, iters: int, progress=None) -> list[float]:
    """Call fn() warmup times untimed, then iters times; return each timed call in milliseconds."""
    if iters < 1 or warmup < 0:
        raise EdgecError(f"--iters must be >= 1 and --warmup >= 0 (got iters={iters}, warmup={warmup})")
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


def benchmark(module, warmup: int = 10, iters: int = 100, batch: int | None = None, progress=None) -> dict:
    """Time the module on fixed random inputs; the dict follows the contract's `bench --json`. On a GPU the
    inputs are copied to the device once and each call is timed to the device's completion (`Module.bind`);
    on the CPU each call is a full `module.run`."""
    feeds = make_inputs(module.inputs, batch)
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
    }
