"""The int8 step of `edgec compile`: calibrate, quantize to QDQ, optionally fall back to fit a budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx

from edgec.errors import EdgecError
from edgec.quantize.calibration import DEFAULT_SAMPLES, calibration_inputs, validation_split
from edgec.quantize.int8 import Int8Scheme

# run(model, feeds) -> one {output name: array} per feed: a model executed the way it will be deployed
Runner = Callable[[onnx.ModelProto, list[dict[str, np.ndarray]]], list[dict[str, np.ndarray]]]


@dataclass(frozen=True)
class Int8Options:
    calib: str | None = None  # "digits" or a DATA.npz path
    method: str = "minmax"  # minmax | percentile | entropy
    samples: int = DEFAULT_SAMPLES
    max_accuracy_drop: float | None = None  # points of top-1 accuracy on the validation samples
    validation: str | None = None  # labelled DATA.npz for the budget; default: a part of the calibration data


def quantize_int8(model: onnx.ModelProto, options: Int8Options, scheme: Int8Scheme, run: Runner | None = None,
                  measured_on: str = "onnxruntime") -> tuple[onnx.ModelProto, dict]:
    """The QDQ model and the manifest's `quantization` record (method, samples, layers kept float).

    With a budget, layer sensitivity and accuracy are measured with `run` (the backend being compiled,
    named by `measured_on`; default ONNX Runtime) on validation samples disjoint from the calibration
    ones and from the held-out split a report scores."""
    from edgec.quantize.int8 import quantize

    if not options.calib:
        raise EdgecError("--precision int8 needs calibration data: add --calib digits or --calib DATA.npz")
    if options.validation and options.max_accuracy_drop is None:
        raise EdgecError("--validation-data is only used with --max-accuracy-drop")
    feeds = calibration_inputs(options.calib, model, options.samples)
    record = {"format": "QDQ", **scheme.describe(),
              "calibration": {"data": options.calib if options.calib == "digits" else "npz",
                              "method": options.method, "samples": len(feeds)}, "kept_float": []}
    if options.max_accuracy_drop is None:
        return quantize(model, feeds, options.method, scheme=scheme), record
    from edgec.quantize.fallback import quantize_within_budget

    x, y, validation = validation_split(options.calib, model, options.samples, options.validation)
    result = quantize_within_budget(model, feeds, x, y, options.max_accuracy_drop, options.method, scheme, run)
    record.update(kept_float=result.kept_float, accuracy_budget_points=options.max_accuracy_drop,
                  validation=dict(validation, measured_on=measured_on),
                  eval_accuracy={"fp32": result.fp32_accuracy, "int8": result.int8_accuracy})
    return result.model, record
