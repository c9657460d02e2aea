"""ONNX Runtime as the reference: the one place a reference run of an ONNX model opens a session.

`Reference(model)` runs exactly the graph given (ORT's own rewrites off: what pass validation and
`edgec compare` need); `Reference(model, optimized=True)` runs ORT's optimized session (its fusions,
e.g. QDQ into integer kernels: what a user of ONNX Runtime would get).
"""

from __future__ import annotations

import os

import numpy as np
import onnx


class Reference:
    """An ONNX Runtime CPU session of `model` (ModelProto or path)."""

    def __init__(self, model: onnx.ModelProto | str | os.PathLike, optimized: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if not optimized:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 4  # fatal only: failures reach the user as one edgec error line
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._inputs = {i.name for i in self.session.get_inputs()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name; feeds the session does not take (pruned inputs) are left out."""
        outputs = self.session.run(self.output_names, {k: v for k, v in feeds.items() if k in self._inputs})
        return dict(zip(self.output_names, outputs))

    def run_all(self, feeds_list: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return [self.run(feeds) for feeds in feeds_list]


def run_reference(model: onnx.ModelProto | str | os.PathLike, feeds_list: list[dict],
                  optimized: bool = False) -> list[dict[str, np.ndarray]]:
    """`Reference(model, optimized).run_all(feeds_list)`."""
    return Reference(model, optimized).run_all(feeds_list)
