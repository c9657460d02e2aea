"""Top-1 accuracy and top-1 agreement, the one definition reports, the zoo and quantization use."""

from __future__ import annotations

import numpy as np


def top1(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Fraction of argmax over axis 1 equal to labels (per pixel for N x C x H x W scores); None when
    there are no labels or they do not fit the scores."""
    if labels is None or logits.ndim < 2 or logits.shape[:1] + logits.shape[2:] != np.shape(labels):
        return None
    return float((logits.argmax(axis=1) == labels).mean())


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Fraction of positions where two score arrays pick the same class (axis 1)."""
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean()) if a.ndim >= 2 else None
