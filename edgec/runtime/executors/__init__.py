"""Backend executors: each turns verified payload bytes into a callable on numpy arrays.

Imported lazily by backend name, so a board with only the TVM runtime never imports onnxruntime
(and the other way round). Executors raise ArtifactError (without the artifact's path, which
`edgec.runtime.load` prefixes) when a payload is missing or the backend refuses it.
"""

from __future__ import annotations

import importlib
from typing import Callable, Protocol

import numpy as np

from edgec.runtime.artifact import ArtifactError

_MODULES = {"tvm": "edgec.runtime.executors.tvm_executor", "ort": "edgec.runtime.executors.ort_executor",
            "tensorrt": "edgec.runtime.executors.tensorrt_executor"}


class Executor(Protocol):
    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]: ...


def payload(files: dict[str, bytes], name: str, backend: str) -> bytes:
    """The verified payload `name`, or ArtifactError when the manifest does not list it."""
    if name not in files:
        raise ArtifactError(f"{backend} artifact lacks the payload '{name}'; recompile it with `edgec compile`")
    return files[name]


def open_executor(manifest: dict, files: dict[str, bytes], device: str, path: str | None = None) -> Callable:
    """The executor for the artifact at `path` (executors may keep caches beside it, e.g. TensorRT-RTX's)."""
    backend = manifest["backend"]
    if backend not in _MODULES:
        raise ArtifactError(f"artifact backend '{backend}' cannot be run by this edgec runtime "
                            f"(it runs: {', '.join(sorted(_MODULES))})")
    module = importlib.import_module(_MODULES[backend])
    host_nms = (manifest.get("nms") or {}).get("host")
    if not host_nms:
        return module.open_executor(manifest, files, device, path)
    from edgec.runtime.host_nms import HostNmsExecutor  # the graph stops before NMS; NMS runs here

    graph_outputs = manifest["nms"]["graph_outputs"]
    inner = module.open_executor(dict(manifest, outputs=graph_outputs), files, device, path)
    return HostNmsExecutor(inner, [o["name"] for o in graph_outputs], [o["name"] for o in manifest["outputs"]],
                           host_nms)
