"""Run an ONNX Runtime artifact: payload `model.onnx` plus `session.json` (session options)."""

from __future__ import annotations

import json

import numpy as np

from edgec.errors import EdgecError


class OrtExecutor:
    def __init__(self, manifest: dict, files: dict[str, bytes], device: str):
        try:
            import onnxruntime as ort  # noqa: PLC0415
        except ImportError as e:
            raise EdgecError(f"this artifact needs onnxruntime, which is not importable ({e}); "
                             "install it with `pip install onnxruntime`") from None
        if device.partition(":")[0] != "cpu":
            raise EdgecError(f"ORT artifacts run on the CPU in this edgec version; device '{device}' "
                             "is not supported (use device='cpu')")
        config = json.loads(files["session.json"])
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, config["graph_optimization_level"])
        options.intra_op_num_threads = config.get("intra_op_num_threads", 0)
        options.log_severity_level = 3
        self._session = ort.InferenceSession(files["model.onnx"], options, providers=["CPUExecutionProvider"])
        self._input_names = [i["name"] for i in manifest["inputs"]]
        self._output_names = [o["name"] for o in manifest["outputs"]]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self._output_names, dict(zip(self._input_names, inputs)))


def open_executor(manifest: dict, files: dict[str, bytes], device: str) -> OrtExecutor:
    return OrtExecutor(manifest, files, device)
