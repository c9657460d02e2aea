"""The int8 step of `edgec compile`: calibrate, quantize to QDQ, optionally fall back to fit a budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from edgec.errors import EdgecError
from edgec.quantize.calibration import DEFAULT_SAMPLES, calibration_inputs
from edgec.quantize.int8 import Int8Scheme


@dataclass(frozen=True)
class Int8Options:
    calib: str | None = None  # "digits" or a DATA.npz path
    method: str = "minmax"  # minmax | percentile | entropy
    samples: int = DEFAULT_SAMPLES
    max_accuracy_drop: float | None = None  # points of top-1 accuracy on the eval split


def _eval_split(spec: str, model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    from edgec.frontend.loader import dims_of, graph_inputs

    if spec == "digits":
        from models import data

        dims = dims_of(graph_inputs(model)[0])
        split = data.digits(dims[2], dims[1])
        return split.x_test, split.y_test
    with np.load(spec, allow_pickle=False) as npz:
        if "y" not in npz:
            raise EdgecError(f"--max-accuracy-drop needs labels: {spec} has no array 'y' next to 'x'")
        return npz["x"].astype(np.float32), npz["y"]


def quantize_int8(model: onnx.ModelProto, options: Int8Options, scheme: Int8Scheme) -> tuple[onnx.ModelProto, dict]:
    """The QDQ model and the manifest's `quantization` record (method, samples, layers kept float)."""
    from edgec.quantize.int8 import quantize

    if not options.calib:
        raise EdgecError("--precision int8 needs calibration data: add --calib digits or --calib DATA.npz")
    feeds = calibration_inputs(options.calib, model, options.samples)
    record = {"format": "QDQ", **scheme.describe(),
              "calibration": {"data": options.calib if options.calib == "digits" else "npz",
                              "method": options.method, "samples": len(feeds)}, "kept_float": []}
    if options.max_accuracy_drop is None:
        return quantize(model, feeds, options.method, scheme=scheme), record
    from edgec.quantize.fallback import quantize_within_budget

    x, y = _eval_split(options.calib, model)
    result = quantize_within_budget(model, feeds, x, y, options.max_accuracy_drop, options.method, scheme)
    record.update(kept_float=result.kept_float, accuracy_budget_points=options.max_accuracy_drop,
                  eval_accuracy={"fp32": result.fp32_accuracy, "int8": result.int8_accuracy})
    return result.model, record
