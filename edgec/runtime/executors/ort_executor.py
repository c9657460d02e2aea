"""Run an ONNX Runtime artifact: payload `model.onnx` plus `session.json` (session options)."""

from __future__ import annotations

import json

import numpy as np

from edgec.errors import EdgecError
from edgec.runtime import InputError
from edgec.runtime.artifact import ArtifactError
from edgec.runtime.executors import payload


class OrtExecutor:
    def __init__(self, manifest: dict, files: dict[str, bytes], device: str):
        try:
            import onnxruntime as ort  # noqa: PLC0415
        except ImportError as e:
            raise EdgecError(f"this artifact needs onnxruntime, which is not importable ({e}); "
                             "install it with `pip install onnxruntime`") from None
        if device.partition(":")[0] != "cpu":
            raise InputError(f"ORT artifacts run on the CPU in this edgec version; device '{device}' "
                             "is not supported (use device='cpu')")
        options = _session_options(ort, payload(files, "session.json", "ort"))
        model = payload(files, "model.onnx", "ort")
        try:
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own InvalidProtobuf/Fail/InvalidGraph types
            raise ArtifactError(f"ONNX Runtime refused the payload 'model.onnx' ({' '.join(str(e).split())[:300]}); "
                                "recompile it with `edgec compile`") from None
        self._input_names = [i["name"] for i in manifest["inputs"]]
        self._output_names = [o["name"] for o in manifest["outputs"]]
        have = ([i.name for i in self._session.get_inputs()], [o.name for o in self._session.get_outputs()])
        if sorted(have[0]) != sorted(self._input_names) or sorted(have[1]) != sorted(self._output_names):
            raise ArtifactError(f"payload 'model.onnx' has inputs {have[0]} and outputs {have[1]}, which do not "
                                "match the manifest; recompile it with `edgec compile`")

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self._output_names, dict(zip(self._input_names, inputs)))


_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


def _session_options(ort, data: bytes):
    """SessionOptions from session.json: {"graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_num_threads": 0}."""
    try:
        config = json.loads(data)
    except (ValueError, RecursionError) as e:
        config = f"not JSON: {e}"
    level = config.get("graph_optimization_level") if isinstance(config, dict) else None
    threads = config.get("intra_op_num_threads", 0) if isinstance(config, dict) else None
    if level not in _LEVELS or type(threads) is not int or not 0 <= threads <= 1024:
        raise ArtifactError(f"payload 'session.json' is not valid ORT session options ({str(config)[:200]}); "
                            "recompile it with `edgec compile`")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    options.log_severity_level = 4  # errors come back as exceptions; keep stderr clean
    return options


def open_executor(manifest: dict, files: dict[str, bytes], device: str, path: str | None = None) -> OrtExecutor:
    return OrtExecutor(manifest, files, device)
