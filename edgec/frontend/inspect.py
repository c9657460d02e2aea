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
