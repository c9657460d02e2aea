"""`edgec::nms`: a torch.library custom op with ONNX NonMaxSuppression semantics, exported as that ONNX op.

Eager and traced runs call edgec.runtime.host_nms (numpy, ORT's semantics); the fake kernel gives the
exporter a data-dependent row count; the TorchScript exporter's symbolic emits one NonMaxSuppression node
whose max_output_boxes_per_class / iou_threshold / score_threshold are constant inputs.
"""

from __future__ import annotations

import numpy as np
import torch

from edgec.runtime.host_nms import non_max_suppression

OPSET = 11


@torch.library.custom_op("edgec::nms", mutates_args=())
def nms(boxes: torch.Tensor, scores: torch.Tensor, max_output_boxes_per_class: int, iou_threshold: float,
        score_threshold: float) -> torch.Tensor:
    """boxes [B, N, 4], scores [B, C, N] -> selected_indices [M, 3] int64 rows (batch, class, box)."""
    selected = non_max_suppression(boxes.detach().numpy(), scores.detach().numpy(), max_output_boxes_per_class,
                                   iou_threshold, score_threshold)
    return torch.from_numpy(np.ascontiguousarray(selected))


@nms.register_fake
def _(boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold):
    rows = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((rows, 3), dtype=torch.int64)


def _symbolic(g, boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold):
    from torch.onnx import symbolic_helper

    k, iou, score = (symbolic_helper._maybe_get_const(v, t) for v, t in
                     ((max_output_boxes_per_class, "i"), (iou_threshold, "f"), (score_threshold, "f")))
    const = lambda value, dtype: g.op("Constant", value_t=torch.tensor([value], dtype=dtype))  # noqa: E731
    return g.op("NonMaxSuppression", boxes, scores, const(k, torch.int64), const(iou, torch.float32),
                const(score, torch.float32))


torch.onnx.register_custom_op_symbolic("edgec::nms", _symbolic, OPSET)
