"""Evaluation inputs for reports and comparisons: digits, an .npz file, or seeded random data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgec.errors import EdgecError


@dataclass
class Dataset:
    name: str
    x: np.ndarray
    y: np.ndarray | None
    targets: tuple | None = None  # detection ground truth: (boxes per image, labels per image, num_classes)


def _input_dims(onnx_path: Path) -> list:
    from edgec.frontend.loader import dims_of, graph_inputs, load_model

    inputs = graph_inputs(load_model(onnx_path))
    if len(inputs) != 1:
        raise EdgecError(f"{onnx_path}: evaluation data needs a single-input model; this one has {len(inputs)}")
    return dims_of(inputs[0])


def digits_split(dims: list, option: str, where: str = ""):
    """The digits split sized to an NxCxHxH input; `option` (--dataset, --calib) names what asked for it."""
    from edgec.zoo import data

    if len(dims) != 4 or not all(isinstance(d, int) for d in dims[1:]) or dims[2] != dims[3]:
        raise EdgecError(f"{where}{option} digits needs an NxCxHxH image input, the model takes "
                         f"{'x'.join(map(str, dims))}; pass {option} DATA.npz")
    return data.digits(dims[2], dims[1])


def read_npz(path: str | Path, what: str, labels: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) of an .npz of `what` (a dataset, calibration data); `labels`: True requires `y`, None takes it if
    there, False ignores it."""
    path = Path(path)
    if not path.is_file():
        raise EdgecError(f"{path}: no such {what} file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz:
                raise EdgecError(f"{path}: {what} needs an array 'x' (inputs) and optionally 'y' (labels); "
                                 f"found {', '.join(npz.files) or 'nothing'}")
            if labels and "y" not in npz:
                raise EdgecError(f"--max-accuracy-drop needs labels: {path} has no array 'y' next to 'x'")
            return npz["x"], (npz["y"] if labels is not False and "y" in npz else None)
    except (OSError, ValueError) as e:
        raise EdgecError(f"{path}: not a readable .npz file ({e})") from None


def load_dataset(spec: str, onnx_path: Path, zoo_entry=None, samples: int = 8) -> Dataset:
    """`digits` (the zoo entry's held-out split, or digits sized to the model's NxCxHxH input),
    an .npz with `x` (and optional labels `y`), or `random` (`samples` seeded normal samples)."""
    if spec == "digits":
        split = zoo_entry.load_data() if zoo_entry is not None else \
            digits_split(_input_dims(onnx_path), "--dataset", f"{onnx_path}: ")
        return Dataset("digits", split.x_test, split.y_test)
    if spec == "random":
        dims = [d if isinstance(d, int) else 1 for d in _input_dims(onnx_path)[1:]]
        from edgec.runtime.inputs import random_inputs

        return Dataset("random", random_inputs([("x", [samples, *dims], "float32")])["x"], None)
    if spec.endswith(".npz"):
        x, y = read_npz(spec, "dataset")
        return Dataset(Path(spec).name, x, y)
    if spec == "shapes":
        from edgec.zoo import shapes

        test = shapes.part("test")
        dims = _input_dims(onnx_path)
        if list(dims[1:]) != list(test.x.shape[1:]):
            raise EdgecError(f"{onnx_path}: --dataset shapes has {'x'.join(map(str, test.x.shape[1:]))} images, the "
                             f"model takes {'x'.join(map(str, dims))}; pass --dataset DATA.npz")
        return Dataset("shapes", test.x, None, (test.boxes, test.labels, len(shapes.CLASSES)))
    raise EdgecError(f"unknown dataset '{spec}'; use digits, random or a DATA.npz file")
