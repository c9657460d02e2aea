"""COCO-style mean average precision for box detections (numpy).

For each class c and IoU threshold t in {0.50, 0.55, ..., 0.95}: detections of c from all images, by score
descending (stable), are matched greedily, each to the unmatched ground-truth box of c in its image with
the highest IoU >= t (true positive) or to none (false positive). With TP/FP cumulated in that order,

    recall_k = TP_k / G_c,   precision_k = TP_k / (TP_k + FP_k),   p_interp(r) = max_{k: recall_k >= r} precision_k
    AP_c,t = mean of p_interp over the 101 recalls r = 0, 0.01, ..., 1 (0 where no recall reaches r)

mAP@t averages AP over classes with ground truth; mAP@0.5:0.95 averages mAP@t over the ten thresholds.
(COCO's crowd regions and area ranges do not apply; its max 100 detections per image is kept.)
"""

from __future__ import annotations

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner boxes a [n, 4] and b [m, 4] -> [n, m] (float64)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), -1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), -1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _match(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Greedy matching of score-sorted detections (rows) to ground truth (columns) -> [T, n] bool (TP)."""
    tp = np.zeros((len(thresholds), iou.shape[0]), bool)
    for t, thr in enumerate(thresholds):
        free = np.ones(iou.shape[1], bool)
        for d in range(iou.shape[0]):
            cand = np.where(free & (iou[d] >= thr), iou[d], -1.0)
            if cand.size and cand.max() >= 0:
                g = int(cand.argmax())
                free[g] = False
                tp[t, d] = True
    return tp


def average_precision(tp: np.ndarray, n_gt: int) -> np.ndarray:
    """101-point interpolated AP per threshold row of tp [T, n] (detections in score order)."""
    if n_gt == 0:
        return np.full(tp.shape[0], np.nan)
    ctp = np.cumsum(tp, axis=1)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, tp.shape[1] + 1)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    ap = np.zeros(tp.shape[0])
    for t in range(tp.shape[0]):
        idx = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        ap[t] = envelope[t, idx[idx < tp.shape[1]]].sum() / len(RECALL_POINTS)
    return ap


def coco_map(predictions, gt_boxes, gt_labels, num_classes: int) -> dict:
    """predictions: per image (boxes [k, 4], scores [k], labels [k]); ground truth per image boxes/labels.
    Returns {"map_50", "map_50_95", "ap_per_class"} (AP@0.5:0.95 per class, None for absent classes)."""
    aps = np.full((num_classes, len(IOU_THRESHOLDS)), np.nan)
    for c in range(num_classes):
        scores, tps = [], []
        n_gt = 0
        for (boxes, sc, labels), gb, gl in zip(predictions, gt_boxes, gt_labels):
            keep = np.flatnonzero(np.asarray(labels) == c)
            top = np.argsort(-np.asarray(sc), kind="stable")[:MAX_DETECTIONS]
            keep = top[np.isin(top, keep)]
            gt = np.asarray(gb)[np.asarray(gl) == c]
            n_gt += len(gt)
            if len(keep):
                tps.append(_match(box_iou(np.asarray(boxes)[keep], gt), IOU_THRESHOLDS))
                scores.append(np.asarray(sc)[keep])
        if n_gt == 0:
            continue
        if scores:
            order = np.argsort(-np.concatenate(scores), kind="stable")
            tp = np.concatenate(tps, axis=1)[:, order]
        else:
            tp = np.zeros((len(IOU_THRESHOLDS), 0), bool)
        aps[c] = average_precision(tp, n_gt)
    present = ~np.isnan(aps[:, 0])
    return {"map_50": float(aps[present, 0].mean()), "map_50_95": float(aps[present].mean()),
            "ap_per_class": [None if not p else float(a.mean()) for p, a in zip(present, aps)]}
