"""`shapes`: a deterministic synthetic detection dataset (no download; numpy with a fixed seed).

Each RGB image (float32 NCHW in [0, 1]) has a noisy background (a random linear colour gradient plus
Gaussian noise) and 1-4 filled shapes of three classes (0 square, 1 disc, 2 triangle) with random
sizes, positions and colours; shapes may overlap (a later shape paints over an earlier one, up to an
IoU of 0.4 between their boxes). Boxes are pixel corners [x1, y1, x2, y2] of each shape's extent.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CLASSES = ("square", "disc", "triangle")
IMAGE_SIZE = 64
SEED = 0
N_TRAIN, N_TEST = 2400, 400
MAX_OBJECTS = 4
MIN_SIZE, MAX_SIZE = 12, 30
MAX_OVERLAP_IOU = 0.4


@dataclass(frozen=True)
class Detections:
    """Images [N, 3, S, S] and, per image, boxes [k, 4] (x1, y1, x2, y2 pixels) and labels [k] int64."""

    x: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]


@dataclass(frozen=True)
class ShapesSplit:
    train: Detections
    test: Detections
    num_classes: int = len(CLASSES)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner boxes a [n, 4] and b [m, 4] -> [n, m]: |a ∩ b| / (|a| + |b| - |a ∩ b|)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda t: (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _mask(kind: int, x0: float, y0: float, size: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Pixels (centres at +0.5) inside the shape whose bounding box is [x0, y0, x0 + size, y0 + size]."""
    u, v = (xx + 0.5 - x0) / size, (yy + 0.5 - y0) / size  # unit-square coordinates
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if kind == 1:
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    if kind == 2:  # apex at the top centre, base along the bottom edge
        return inside & (np.abs(u - 0.5) <= v / 2)
    return inside


def _image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c0, c1 = rng.uniform(0, 0.6, (2, 3, 1, 1)).astype(np.float32)
    t = ((xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / (2 * size) + 0.5)[None]
    img = c0 + (c1 - c0) * t + rng.normal(0, 0.06, (3, size, size)).astype(np.float32)
    boxes, labels = [], []
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        for _attempt in range(20):
            s = rng.uniform(MIN_SIZE, MAX_SIZE)
            x0, y0 = rng.uniform(0, size - s, 2)
            box = np.array([x0, y0, x0 + s, y0 + s], np.float32)
            if not boxes or box_iou(box[None], np.array(boxes)).max() <= MAX_OVERLAP_IOU:
                break
        else:
            continue
        kind = int(rng.integers(len(CLASSES)))
        colour = rng.uniform(0.35, 1.0, (3, 1, 1)).astype(np.float32) * rng.permutation([1.0, 0.6, 0.2])[:, None, None]
        m = _mask(kind, x0, y0, s, yy, xx)
        img = np.where(m[None], colour + rng.normal(0, 0.03, (3, size, size)).astype(np.float32), img)
        boxes.append(box)
        labels.append(kind)
    return np.clip(img, 0, 1), np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def _generate(rng: np.random.Generator, n: int, size: int) -> Detections:
    images, boxes, labels = zip(*(_image(rng, size) for _ in range(n)))
    return Detections(np.stack(images).astype(np.float32), list(boxes), list(labels))


@lru_cache(maxsize=4)
def part(name: str) -> Detections:
    """"train" (N_TRAIN images) or "test" (N_TEST): independent random streams spawned from SEED."""
    index, count = {"train": (0, N_TRAIN), "test": (1, N_TEST)}[name]
    return _generate(np.random.default_rng(np.random.SeedSequence(SEED).spawn(2)[index]), count, IMAGE_SIZE)


def shapes() -> ShapesSplit:
    """The fixed train/test split."""
    return ShapesSplit(part("train"), part("test"))
