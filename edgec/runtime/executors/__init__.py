"""Backend executors: each turns verified payload bytes into a callable on numpy arrays.

Imported lazily by backend name, so a board with only the TVM runtime never imports onnxruntime
(and the other way round).
"""

from __future__ import annotations

import importlib
from typing import Callable, Protocol

import numpy as np

from edgec.errors import EdgecError

_MODULES = {"tvm": "edgec.runtime.executors.tvm_executor", "ort": "edgec.runtime.executors.ort_executor"}


class Executor(Protocol):
    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]: ...


def open_executor(manifest: dict, files: dict[str, bytes], device: str) -> Callable:
    backend = manifest["backend"]
    if backend not in _MODULES:
        raise EdgecError(f"artifact backend '{backend}' cannot be run by this edgec runtime "
                         f"(it runs: {', '.join(sorted(_MODULES))})")
    module = importlib.import_module(_MODULES[backend])
    return module.open_executor(manifest, files, device)
