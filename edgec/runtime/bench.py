"""Latency measurement of a loaded Module: warm-up, timed iterations, percentiles, peak RSS."""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from edgec.errors import EdgecError


def make_inputs(inputs, batch: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for [(name, shape, dtype)]: symbolic dims and a batch dim take `batch` (default 1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape, dtype in inputs:
        dims = []
        for axis, d in enumerate(shape):
            if isinstance(d, str):
                dims.append(batch or 1)
            elif axis == 0 and batch is not None and d != batch:
                raise EdgecError(f"input '{name}' was compiled with a fixed batch of {d}; --batch {batch} needs "
                                 f"an artifact compiled with --input-shape {name}={batch}x"
                                 + "x".join(str(x) for x in shape[1:]))
            else:
                dims.append(d)
        dt = np.dtype(dtype)
        if dt.kind == "f":
            feeds[name] = rng.standard_normal(dims).astype(dt)
        elif dt.kind in "iu":
            feeds[name] = rng.integers(0, 2, size=dims).astype(dt)
        elif dt.kind == "b":
            feeds[name] = rng.integers(0, 2, size=dims).astype(bool)
        else:
            raise EdgecError(f"input '{name}': cannot generate random data of dtype {dtype}")
    return feeds


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
