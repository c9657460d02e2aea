"""Calibration inputs for int8: the training split of digits (never the held-out split) or an .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgec.errors import EdgecError
from edgec.frontend.loader import dims_of, graph_inputs

DEFAULT_SAMPLES = 64


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


def _digits_train(dims: list, zoo_entry) -> np.ndarray:
    from models import data

    if zoo_entry is not None:
        return zoo_entry.load_data().x_train
    if len(dims) != 4 or not all(isinstance(d, int) for d in dims[1:]) or dims[2] != dims[3]:
        raise EdgecError(f"--calib digits needs an NxCxHxH image input, the model takes "
                         f"{'x'.join(map(str, dims))}; pass --calib DATA.npz")
    return data.digits(dims[2], dims[1]).x_train


def _npz(path: Path) -> np.ndarray:
    if not path.is_file():
        raise EdgecError(f"{path}: no such calibration file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz:
                raise EdgecError(f"{path}: calibration data needs an array 'x'; found {', '.join(npz.files) or 'nothing'}")
            return npz["x"]
    except (OSError, ValueError) as e:
        raise EdgecError(f"{path}: not a readable .npz file ({e})") from None
