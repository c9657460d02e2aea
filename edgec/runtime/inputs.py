"""Deterministic random inputs for an interface, the one generator benches and pass validation use."""

from __future__ import annotations

import numpy as np


def random_inputs(specs, symbolic: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """{name: array} for [(name, shape, dtype)]: standard normal floats, zero integers and booleans (an index
    or a mask that is valid for any dim); every symbolic dim (a name, not a number) takes `symbolic`."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape, dtype in specs:
        dims = [d if isinstance(d, int) else symbolic for d in shape]
        dt = np.dtype(dtype)
        feeds[name] = rng.standard_normal(dims).astype(dt) if dt.kind == "f" else np.zeros(dims, dt)
    return feeds
