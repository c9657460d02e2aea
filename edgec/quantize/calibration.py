"""Calibration inputs for int8, and the validation samples `--max-accuracy-drop` chooses with.

Neither ever touches the held-out split a report scores: `digits` calibrates on the first samples of
its training split and validates on the last VALIDATION_SAMPLES of it; a DATA.npz calibrates on its
first samples and, without a separate `--validation-data` file, validates on its last quarter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgec.errors import EdgecError
from edgec.frontend.loader import dims_of, graph_inputs

DEFAULT_SAMPLES = 64
VALIDATION_SAMPLES = 360  # digits: as many as its held-out split, from the end of the training split


def calibration_inputs(spec: str, model: onnx.ModelProto, samples: int = DEFAULT_SAMPLES,
                       zoo_entry=None) -> list[dict[str, np.ndarray]]:
    """`samples` single-sample feeds, in a fixed order, from `digits` or DATA.npz (array `x`)."""
    if samples < 1:
        raise EdgecError(f"--calib-samples {samples}: must be >= 1")
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise EdgecError(f"int8 calibration needs a single-input model; this one has {len(inputs)} inputs")
    name, dims = inputs[0].name, dims_of(inputs[0])
    if spec == "digits":
        x = _digits_train(dims, zoo_entry)
    elif spec.endswith(".npz"):
        x = _npz(Path(spec))
    else:
        raise EdgecError(f"--calib '{spec}': use digits or a DATA.npz file with an array 'x'")
    want = [d for d in dims[1:]]
    if list(x.shape[1:]) != [d if isinstance(d, int) else s for d, s in zip(want, x.shape[1:])]:
        raise EdgecError(f"--calib '{spec}': samples have shape {'x'.join(map(str, x.shape[1:]))}, the model's "
                         f"input '{name}' takes {'x'.join(map(str, dims))}")
    x = x[:samples].astype(np.float32)
    return [{name: np.ascontiguousarray(x[i:i + 1])} for i in range(len(x))]


def _digits_split(dims: list, zoo_entry=None):
    from edgec.frontend.datasets import digits_split

    return zoo_entry.load_data() if zoo_entry is not None else digits_split(dims, "--calib")


def _digits_train(dims: list, zoo_entry) -> np.ndarray:
    return _digits_split(dims, zoo_entry).x_train


def _npz(path: Path, labels: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Array `x` of an .npz (with `labels`: and `y`)."""
    from edgec.frontend.datasets import read_npz

    x, y = read_npz(path, "calibration data", labels=labels)
    return (x, y) if labels else x


def validation_split(spec: str, model: onnx.ModelProto, samples: int = DEFAULT_SAMPLES,
                     validation: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(x, y, description) the accuracy budget is measured on: `validation` (a labelled DATA.npz) when
    given, else a part of the calibration data `spec` that calibration does not use."""
    if validation is not None:
        x, y = _npz(Path(validation), labels=True)
        return x.astype(np.float32), y, {"data": Path(validation).name, "samples": len(x),
                                         "split": "the --validation-data file"}
    if spec == "digits":
        split = _digits_split(dims_of(graph_inputs(model)[0]))
        if samples > len(split.x_train) - VALIDATION_SAMPLES:
            raise EdgecError(f"--calib-samples {samples}: digits' training split has {len(split.x_train)} samples and "
                             f"its last {VALIDATION_SAMPLES} validate --max-accuracy-drop; use at most "
                             f"{len(split.x_train) - VALIDATION_SAMPLES}")
        return (split.x_train[-VALIDATION_SAMPLES:], split.y_train[-VALIDATION_SAMPLES:],
                {"data": "digits", "samples": VALIDATION_SAMPLES,
                 "split": f"the last {VALIDATION_SAMPLES} of digits' training split (calibration uses its first "
                          f"{samples}; the held-out split is not used)"})
    x, y = _npz(Path(spec), labels=True)
    held = max(1, len(x) // 4)
    if len(x) < 2:
        raise EdgecError(f"--calib {spec}: {len(x)} samples cannot be split into calibration and validation; "
                         "pass --validation-data DATA.npz")
    if samples > len(x) - held:
        raise EdgecError(f"--calib-samples {samples}: {spec} has {len(x)} samples and its last {held} validate "
                         f"--max-accuracy-drop; use at most {len(x) - held}, or pass --validation-data DATA.npz")
    return (x[-held:].astype(np.float32), y[-held:],
            {"data": Path(spec).name, "samples": held,
             "split": f"the last {held} of {len(x)} samples of the --calib file (calibration uses its first "
                      f"{samples}); pass --validation-data for a separate file"})
