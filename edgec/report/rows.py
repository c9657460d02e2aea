"""A report row (the contract's schema) and the latency figures every row measures the same way."""

from __future__ import annotations

from edgec.frontend.inspect import tensorrt_summary
from edgec.runtime.bench import latency_stats, time_calls


def row(backend, target, precision, status="ok", note="", **values) -> dict:
    """One report row; every figure not given is None (not measured), never invented. "ran_on": where it was
    measured ("host", "qemu-user on this host", "rpc:KEY (HOST:PORT)"), None when it was not run."""
    result = {"backend": backend, "target": target, "precision": precision, "accuracy": None, "map_50_95": None,
              "top1_agreement": None, "max_abs_err": None, "mean_abs_err": None, "latency_ms": None,
              "throughput_per_s": None, "artifact_bytes": None, "compile_s": None, "status": status, "note": note,
              "ran_on": None}
    result.update(values)
    return result


def latency(fn, warmup: int, iters: int) -> tuple[dict, float]:
    """({p50, p90, p99} ms, calls per second) of `fn` after `warmup` untimed calls."""
    stats = latency_stats(time_calls(fn, warmup, iters))
    return {k: stats[k] for k in ("p50", "p90", "p99")}, 1e3 / stats["mean"]


def engine_note(result) -> str:
    """What a compile produced, for a row's note: a TensorRT engine's size, build time, layers and the ONNX
    nodes TensorRT fused, folded or rejected (edgec.frontend.inspect.tensorrt_summary); '' for other backends."""
    if result.manifest["backend"] != "tensorrt":
        return ""
    return "; ".join(tensorrt_summary(result.manifest, result.stats.get("build_s")))


def cannot_run(result, error, size: int) -> dict:
    """The row of an artifact that compiled but cannot run on this host (e.g. a GPU artifact, no GPU)."""
    manifest = result.manifest
    note = "; ".join(n for n in (engine_note(result), f"compiled, cannot run on this host: {error}") if n)
    return row(manifest["backend"], manifest["target"]["name"], manifest["precision"], "unsupported", note,
               artifact_bytes=size, compile_s=round(result.seconds, 3))

