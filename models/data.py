"""Datasets that need no download: scikit-learn's digits, split and resized deterministically."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SPLIT_SEED = 0
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """Train/test arrays: images float32 NCHW in [0, 1], labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


@lru_cache(maxsize=8)
def digits(image_size: int = 28, channels: int = 1) -> Split:
    """The 1797 8x8 digits, stratified 80/20 split (fixed seed), bilinearly resized to image_size."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # N x 1 x 8 x 8
    labels = bunch.target.astype(np.int64)
    if image_size != 8:
        images = F.interpolate(torch.from_numpy(images), size=(image_size, image_size), mode="bilinear",
                               align_corners=False).numpy()
    if channels != 1:
        images = np.repeat(images, channels, axis=1)
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED,
                                              stratify=labels)
    return Split(np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_te), y_te, 10)


@lru_cache(maxsize=4)
def digit_rows(image_size: int = 28) -> Split:
    """The digits as sequences: (N, rows, columns) float32, one time step per image row."""
    split = digits(image_size, 1)
    return Split(split.x_train[:, 0], split.y_train, split.x_test[:, 0], split.y_test, split.num_classes)


FOREGROUND_THRESHOLD = 0.5


@lru_cache(maxsize=4)
def digit_masks(image_size: int = 32, channels: int = 3) -> Split:
    """Per-pixel labels for segmentation: digit class + 1 where intensity > 0.5, background 0 (11 classes)."""
    split = digits(image_size, channels)

    def masks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(x[:, 0] > FOREGROUND_THRESHOLD, y[:, None, None] + 1, 0).astype(np.int64)

    return Split(split.x_train, masks(split.x_train, split.y_train), split.x_test,
                 masks(split.x_test, split.y_test), split.num_classes + 1)


def mean_iou(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean intersection-over-union of argmax(scores, axis 1) against labels, over classes present in either."""
    pred = scores.argmax(axis=1)
    ious = []
    for c in range(num_classes):
        union = np.logical_or(pred == c, labels == c).sum()
        if union:
            ious.append(np.logical_and(pred == c, labels == c).sum() / union)
    return float(np.mean(ious))
