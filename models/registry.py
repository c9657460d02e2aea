"""The model zoo: every reference network with its data, input shape and training recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgec.zoo import (
    alexnet,
    data,
    densenet,
    detector,
    fcn,
    googlenet,
    lenet,
    mobilenet,
    nin,
    resnet,
    rnn,
    shapes,
    transformer,
    vgg,
)


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
    task: str = "classification"  # or "segmentation": per-pixel labels, accuracy is pixel accuracy
    min_miou: float | None = None  # segmentation only: bar for the held-out mean IoU
    fit: Callable | None = None  # own training recipe fit(entry, log) -> (model, metrics); None: zoo.train.train
    weights_from: str | None = None  # not trained: the named network's weights (same parameters)


def _digits(size: int, channels: int = 1) -> Callable[[], data.Split]:
    return lambda: data.digits(size, channels)


def _rows(size: int) -> Callable[[], data.Split]:
    return lambda: data.digit_rows(size)


def _masks(size: int) -> Callable[[], data.Split]:
    return lambda: data.digit_masks(size, 3)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("lenet", lenet.lenet, (1, 1, 28, 28), _digits(28),
                 "LeNet-5 (d2l): sigmoid, average pooling", epochs=40, lr=3e-3),
        ZooEntry("lenet-relu", lenet.lenet_relu, (1, 1, 28, 28), _digits(28),
                 "LeNet with ReLU and max pooling", epochs=20, lr=2e-3),
        ZooEntry("alexnet", alexnet.alexnet, (1, 3, 96, 96), _digits(96, 3),
                 "AlexNet (d2l), 1/4 width: 11x11/5x5/3x3 convs, max pools, dropout FC", epochs=30, lr=1e-3),
        ZooEntry("vgg", vgg.vgg, (1, 3, 32, 32), _digits(32, 3),
                 "VGG-11 (d2l VGG blocks), 1/4 width", epochs=30, lr=1e-3),
        ZooEntry("nin", nin.nin, (1, 3, 96, 96), _digits(96, 3),
                 "Network in Network (d2l NiN blocks), global average pooling", epochs=20, lr=1e-3),
        ZooEntry("googlenet", googlenet.googlenet, (1, 3, 64, 64), _digits(64, 3),
                 "GoogLeNet (d2l), nine Inception blocks, 1/4 width", epochs=20, lr=1e-3),
        ZooEntry("resnet18", resnet.resnet18, (1, 3, 64, 64), _digits(64, 3),
                 "ResNet-18 (d2l), residual blocks with BatchNorm, 1/4 width", epochs=15, lr=1e-3),
        ZooEntry("densenet", densenet.densenet, (1, 3, 64, 64), _digits(64, 3),
                 "DenseNet (d2l), four dense blocks (growth 16) with transition blocks", epochs=15, lr=1e-3),
        ZooEntry("mobilenetv2", mobilenet.mobilenetv2, (1, 3, 64, 64), _digits(64, 3),
                 "MobileNetV2, width 0.5: inverted residuals, depthwise separable convs, ReLU6", epochs=12,
                 lr=2e-3),
        ZooEntry("fcn", fcn.fcn, (1, 3, 32, 32), _masks(32),
                 "FCN segmentation: residual body, 1x1 class conv, ConvTranspose x4 (bilinear init); "
                 "11 classes (background + digit on foreground pixels)", epochs=20, lr=2e-3,
                 task="segmentation", min_accuracy=0.95, min_miou=0.90),
        ZooEntry("gru", rnn.gru, (1, 28, 28), _rows(28),
                 "GRU classifier (hidden 128), image rows as 28 time steps", epochs=20, lr=2e-3, min_accuracy=0.90),
        ZooEntry("lstm", rnn.lstm, (1, 28, 28), _rows(28),
                 "LSTM classifier (hidden 128), image rows as 28 time steps", epochs=20, lr=2e-3, min_accuracy=0.90),
        ZooEntry("transformer", transformer.transformer, (1, 1, 28, 28), _digits(28),
                 "Transformer encoder: 4x4 patches as 49 tokens, 2 pre-norm layers, 4-head self-attention, "
                 "LayerNorm, GELU", epochs=40, lr=1e-3, weight_decay=1e-4, min_accuracy=0.90),
        ZooEntry("detector", detector.detector, (1, 3, 64, 64), shapes.shapes,
                 "Single-shot detector, YOLO-style 8x8 grid; box decoding, score threshold, class-wise NMS "
                 "(ONNX NonMaxSuppression) and top-k inside the model", epochs=12, lr=4e-3, batch_size=32,
                 weight_decay=1e-4, min_accuracy=0.7, dataset="shapes", output_names=detector.OUTPUTS,
                 task="detection", fit=detector.fit),
        ZooEntry("detector-raw", detector.detector_raw, (1, 3, 64, 64), shapes.shapes,
                 "The detector without NMS: raw decoded boxes and class scores (detector's weights)",
                 min_accuracy=0.7, dataset="shapes", output_names=detector.RAW_OUTPUTS, task="detection",
                 weights_from="detector"),
    ]
}


def get(name: str) -> ZooEntry:
    """The zoo entry called `name`; unknown names raise KeyError listing the known ones."""
    try:
        return ZOO[name]
    except KeyError:
        raise KeyError(f"unknown zoo model '{name}'; known: {', '.join(ZOO)}") from None
