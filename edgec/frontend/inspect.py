"""Summaries for `edgec inspect`: an ONNX model's interface and ops, or an artifact's manifest."""

from __future__ import annotations

import collections
import os

import numpy as np
import onnx

from edgec.frontend.loader import io_spec, load_model


def summarize_model(path: str | os.PathLike, input_shapes: dict | None = None) -> dict:
    """The model's interface (after `input_shapes`, as compile would see it), ops and parameters."""
    model = load_model(path, input_shapes)
    inputs, outputs = io_spec(model)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    param_bytes = sum(onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    ops = collections.Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                              for n in model.graph.node)
    return {
        "kind": "onnx",
        "path": str(path),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": inputs,
        "outputs": outputs,
        "nodes": len(model.graph.node),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "parameters": params,
        "parameter_bytes": param_bytes,
    }


def summarize_artifact(path: str | os.PathLike) -> dict:
    from edgec.runtime.artifact import read_manifest

    manifest = read_manifest(path)  # first: it names a missing or broken file properly
    return {"kind": "artifact", "path": str(path), "size_bytes": os.path.getsize(path), "manifest": manifest}


def tensorrt_summary(manifest: dict, build_s: float | None = None) -> list[str]:
    """A TensorRT artifact's engine in lines: flavour, plan size and GPUs, layers, the ONNX nodes TensorRT fused
    into one layer, folded away, or rejected (run on the host). `build_s`: the build time, when measured (the
    artifact does not record it, so that rebuilds stay byte-identical)."""
    config = manifest.get("backend_config") or {}
    trt, plan = config.get("tensorrt") or {}, config.get("plan") or {}
    label = {"rtx": "TensorRT-RTX", "full": "TensorRT"}.get(trt.get("flavour"), "TensorRT")
    weights = (plan.get("header") or {}).get("weights_bytes")
    lines = [f"{label} {trt.get('version')} plan: {_size(plan.get('bytes', 0))}"
             + (f" (weights {_size(weights)}, {config.get('weights')})" if weights is not None else "")
             + f", for compute capability {', '.join(trt.get('compute_capabilities') or ['?'])}"
             + (f"; built in {build_s:.2f} s" if build_s is not None else "")]
    engine = config.get("engine")
    if engine:
        fused = ", ".join("+".join(group) for group in engine["fused"]) or "none"
        lines.append(f"engine: {engine['layers']} layers from {engine['onnx_nodes']} ONNX nodes; fused: {fused}; "
                     f"folded away: {', '.join(engine['folded']) or 'none'}")
    rejected = [n["node"] for n in (manifest.get("nms") or {}).get("nodes", []) if n["runs_on"] == "host"]
    if rejected:
        lines.append(f"rejected by {label}, run on the host: {', '.join(rejected)}")
    return lines


def _size(nbytes: int) -> str:
    return f"{nbytes / 2 ** 20:.2f} MiB" if nbytes >= 2 ** 20 else f"{nbytes / 1024:.1f} KiB"
