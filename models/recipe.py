"""What every zoo training run shares: the seed, the thread count, the weights' architecture fingerprint."""

from __future__ import annotations

import hashlib

from torch import nn

SEED = 0
TRAIN_THREADS = 1  # fixed, so the float reduction order (and so the weights) does not depend on the host or its load


def architecture_key(model: nn.Module) -> str:
    """Fingerprint of parameter names and shapes: cached weights are used only when it matches."""
    spec = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    return hashlib.sha256(repr(spec).encode()).hexdigest()[:16]
