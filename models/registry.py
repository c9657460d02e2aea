"""The model zoo: every reference network with its data, input shape and training recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from models import data, lenet


@dataclass(frozen=True)
class ZooEntry:
    """One reference network. `input_shape` is the default export shape (batch 1, NCHW)."""

    name: str
    build: Callable
    input_shape: tuple[int, ...]
    load_data: Callable[[], data.Split]
    description: str
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    min_accuracy: float = 0.95
    dataset: str = "digits"
    output_names: tuple[str, ...] = field(default=("logits",))


def _digits(size: int, channels: int = 1) -> Callable[[], data.Split]:
    return lambda: data.digits(size, channels)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("lenet", lenet.lenet, (1, 1, 28, 28), _digits(28),
                 "LeNet-5 (d2l): sigmoid, average pooling", epochs=40, lr=3e-3),
        ZooEntry("lenet-relu", lenet.lenet_relu, (1, 1, 28, 28), _digits(28),
                 "LeNet with ReLU and max pooling", epochs=20, lr=2e-3),
    ]
}


def get(name: str) -> ZooEntry:
    """The zoo entry called `name`; unknown names raise KeyError listing the known ones."""
    try:
        return ZOO[name]
    except KeyError:
        raise KeyError(f"unknown zoo model '{name}'; known: {', '.join(ZOO)}") from None
