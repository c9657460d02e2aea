"""BatchNormalization in inference mode as a per-channel affine map (shared by the two BN passes).

BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta = s * y + t, per channel c of axis 1, with
    s = gamma / sqrt(var + eps),  t = beta - mean * s
computed in float64.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.passes._ir_util import constant


def inference_affine(bn: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) for a BatchNormalization that runs in inference mode with constant 1-D parameters, else None."""
    if bn.op_type != "BatchNormalization" or bn.domain != "" or len(bn.inputs) != 5:
        return None
    if bn.attributes.get_int("training_mode", 0) or bn.attributes.get_int("spatial", 1) != 1:
        return None
    if any(out.uses() or out.is_graph_output() for out in bn.outputs[1:]):
        return None
    params = [constant(v) for v in bn.inputs[1:]]
    if any(p is None or p.ndim != 1 or p.shape != params[0].shape for p in params):
        return None
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    scale = gamma / np.sqrt(var + bn.attributes.get_float("epsilon", 1e-5))
    return scale, beta - mean * scale
