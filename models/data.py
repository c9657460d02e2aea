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
