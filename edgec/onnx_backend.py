"""ONNX's backend API (`onnx.backend.base.Backend`) on top of edgec: prepare = compile for the host + load.

    from edgec import onnx_backend
    rep = onnx_backend.prepare(model)              # TVM; onnx_backend.OrtOnnxBackend.prepare for ONNX Runtime
    outputs = rep.run([x])                         # a namedtuple of numpy arrays, in graph-output order

This is what lets ONNX's own backend test suite run against edgec (benchmarks/onnx_node_tests.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, namedtupledict

from edgec import runtime
from edgec.errors import EdgecError

_DEVICES = {"CPU": "cpu"}


class EdgecRep(BackendRep):
    """A compiled, loaded model; `run` takes a list (graph-input order), a dict, or one array."""

    def __init__(self, module: runtime.Module):
        self.module = module

    def run(self, inputs, **kwargs) -> tuple:
        names = [name for name, _, _ in self.module.inputs]
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        feeds = dict(inputs) if isinstance(inputs, dict) else dict(zip(names, inputs))
        outputs = self.module.run({k: np.asarray(v) for k, v in feeds.items()})  # numpy scalars -> 0-d arrays
        return namedtupledict("Outputs", list(outputs))(*outputs.values())


class TvmOnnxBackend(Backend):
    """Compiles with edgec's TVM backend for `--target cpu`."""

    edgec_backend = "tvm"

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() in _DEVICES

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> EdgecRep:
        from edgec.compiler import compile_model

        if not cls.supports_device(device):
            raise EdgecError(f"edgec's ONNX backend runs on {', '.join(_DEVICES)}, not '{device}'")
        super().prepare(model, device, **kwargs)
        with tempfile.TemporaryDirectory(prefix="edgec-onnx-backend-") as tmp:
            source = Path(tmp, "model.onnx")
            onnx.save_model(model, source)
            # no per-pass ORT validation: the node tests check outputs themselves, and ORT cannot run every
            # model the tvm backend can
            result = compile_model(source, target="cpu", output=Path(tmp, "model.edgec"), backend=cls.edgec_backend,
                                   validate=False)
            return EdgecRep(runtime.load(result.path, device=_DEVICES[device.upper()]))


class OrtOnnxBackend(TvmOnnxBackend):
    """Compiles with edgec's ONNX Runtime backend."""

    edgec_backend = "ort"


BACKENDS = {"tvm": TvmOnnxBackend, "ort": OrtOnnxBackend}

# Module-level API, as ONNX backends conventionally expose it (edgec's default backend, TVM).
prepare = TvmOnnxBackend.prepare
run_model = TvmOnnxBackend.run_model
supports_device = TvmOnnxBackend.supports_device
