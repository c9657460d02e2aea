"""A small single-shot detector (YOLO-style grid) for `shapes`, with its post-processing inside the model.

A conv body (stride 8) gives an S x S grid; each cell (i, j) predicts (tx, ty, tw, th) and one logit per
class. Box decoding (pixels, corner form), with stride s = 8 and size prior p = 16:

    cx = (j + sigmoid(tx)) * s,   cy = (i + sigmoid(ty)) * s,   w = p * exp(tw),   h = p * exp(th)
    box = [cx - w/2, cy - h/2, cx + w/2, cy + h/2],   score[c] = sigmoid(logit[c])

`detector` then runs class-wise NMS (edgec::nms, exported as ONNX NonMaxSuppression): score > 0.05,
IoU > 0.5 suppresses, top-k = 10 per class. Outputs: boxes [B, N, 4], scores [B, C, N], selected_indices
[M, 3] (batch, class, box): detection m is boxes[b, n] with score scores[b, c, n].
`detector-raw` stops before NMS (boxes, scores).

Training: focal loss (alpha 0.25, gamma 2) on every cell's class logits, positives at the cell holding a
box centre, plus L1 on (sigmoid(tx), sigmoid(ty), tw, th) there; both normalised by the positive count.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgec.zoo import nms_op, shapes

STRIDE = 8
SIZE_PRIOR = 16.0
SCORE_THRESHOLD = 0.05
IOU_THRESHOLD = 0.5
TOP_K = 10
NUM_CLASSES = len(shapes.CLASSES)
GRID = shapes.IMAGE_SIZE // STRIDE  # the input is 64 x 64
OUTPUTS = ("boxes", "scores", "selected_indices")
RAW_OUTPUTS = OUTPUTS[:2]


def _block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class Detector(nn.Module):
    """Input [B, 3, 64, 64] in [0, 1]; with_nms=False gives the raw (boxes, scores) variant."""

    def __init__(self, with_nms: bool = True, width: int = 48):
        super().__init__()
        self.with_nms = with_nms
        self.body = nn.Sequential(*_block(3, 16, stride=2), *_block(16, 32), nn.MaxPool2d(2), *_block(32, width),
                                  nn.MaxPool2d(2), *_block(width, width), *_block(width, width))
        self.head = nn.Conv2d(width, 4 + NUM_CLASSES, 1)
        self.onnx_dynamic_axes = {"selected_indices": {0: "detections"}}  # read by edgec.frontend.export

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Head outputs [B, 4 + C, S, S] before decoding."""
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor):
        out = self.raw(x).flatten(2)  # [B, 4 + C, N]: cell n = i * GRID + j
        cells = torch.arange(GRID * GRID)
        cx = ((cells % GRID).float() + torch.sigmoid(out[:, 0])) * STRIDE
        cy = ((cells // GRID).float() + torch.sigmoid(out[:, 1])) * STRIDE
        half_w, half_h = SIZE_PRIOR / 2 * torch.exp(out[:, 2]), SIZE_PRIOR / 2 * torch.exp(out[:, 3])
        boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
        scores = torch.sigmoid(out[:, 4:])
        if not self.with_nms:
            return boxes, scores
        return boxes, scores, nms_op.nms(boxes, scores, TOP_K, IOU_THRESHOLD, SCORE_THRESHOLD)


def detector() -> Detector:
    return Detector(with_nms=True)


def detector_raw() -> Detector:
    return Detector(with_nms=False)


def targets(boxes: list[np.ndarray], labels: list[np.ndarray], grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per cell: class one-hot [B, C, S, S] and box target [B, 5, S, S] (fx, fy, tw, th, positive)."""
    cls = np.zeros((len(boxes), NUM_CLASSES, grid, grid), np.float32)
    box = np.zeros((len(boxes), 5, grid, grid), np.float32)
    for b, (bx, lb) in enumerate(zip(boxes, labels)):
        for (x1, y1, x2, y2), c in zip(bx, lb):
            cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
            j, i = min(int(cx), grid - 1), min(int(cy), grid - 1)
            cls[b, c, i, j] = 1
            box[b, :, i, j] = (cx - j, cy - i, math.log((x2 - x1) / SIZE_PRIOR), math.log((y2 - y1) / SIZE_PRIOR), 1)
    return torch.from_numpy(cls), torch.from_numpy(box)


def loss_fn(out: torch.Tensor, cls_t: torch.Tensor, box_t: torch.Tensor) -> torch.Tensor:
    logits = out[:, 4:]
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, cls_t, reduction="none")
    p_t = p * cls_t + (1 - p) * (1 - cls_t)
    focal = (0.25 * cls_t + 0.75 * (1 - cls_t)) * (1 - p_t) ** 2 * ce
    pos = box_t[:, 4:5]
    n_pos = pos.sum().clamp(min=1)
    pred = torch.cat([torch.sigmoid(out[:, :2]), out[:, 2:4]], dim=1)
    box_l1 = ((pred - box_t[:, :4]).abs() * pos).sum()
    return (focal.sum() + 2 * box_l1) / n_pos


def fit(entry, log=print) -> tuple[nn.Module, dict]:
    """Train on the shapes training split (Adam, one-cycle schedule, seed 0, horizontal flips on odd epochs);
    the metrics hold the test split's mAP@0.5 (also as test_accuracy, the zoo's bar) and mAP@0.5:0.95."""
    from edgec.zoo.recipe import SEED, TRAIN_THREADS, architecture_key

    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    torch.manual_seed(SEED)
    try:
        split = shapes.shapes()
        model = entry.build()
        x = torch.from_numpy(split.train.x)
        cls_t, box_t = targets(split.train.boxes, split.train.labels, GRID)
        opt = torch.optim.Adam(model.parameters(), lr=entry.lr, weight_decay=entry.weight_decay)
        steps = entry.epochs * math.ceil(len(x) / entry.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=entry.lr, total_steps=steps, pct_start=0.15)
        gen = torch.Generator().manual_seed(SEED)
        start = time.perf_counter()
        for epoch in range(entry.epochs):
            model.train()
            order = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(0, len(x), entry.batch_size):
                idx = order[i:i + entry.batch_size]
                xb = x[idx]
                if epoch % 2:  # horizontal flip on odd epochs: mirror images and box centres
                    xb = xb.flip(-1)
                opt.zero_grad()
                loss = loss_fn(model.raw(xb), *_flipped(cls_t[idx], box_t[idx], epoch % 2))
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            if log and (epoch + 1) % max(1, entry.epochs // 5) == 0:
                log(f"{entry.name}: epoch {epoch + 1}/{entry.epochs} loss {total / len(x):.4f}")
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    model.eval()
    metrics = {"name": entry.name, "n_train": len(x), "n_test": len(split.test.x), "epochs": entry.epochs,
               "train_seconds": round(seconds, 2), "architecture": architecture_key(model),
               "torch_version": torch.__version__}
    metrics.update(evaluate(model, split.test))
    metrics["test_accuracy"] = metrics["map_50"]
    return model, metrics


def _flipped(cls_t: torch.Tensor, box_t: torch.Tensor, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of horizontally flipped images: columns reversed, fx -> 1 - fx."""
    if not flip:
        return cls_t, box_t
    box_t = box_t.flip(-1).clone()
    box_t[:, 0] = torch.where(box_t[:, 4] > 0, 1 - box_t[:, 0], box_t[:, 0])
    return cls_t.flip(-1), box_t


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 100) -> list[tuple[np.ndarray, ...]]:
    """Per image: (boxes [k, 4], scores [k], labels [k]) after the model's own NMS (a `detector`)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        boxes, scores, selected = (t.numpy() for t in model(torch.from_numpy(x[i:i + batch_size])))
        out += detections(boxes, scores, selected)
    return out


def detections(boxes: np.ndarray, scores: np.ndarray, selected: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Model outputs -> per image (boxes [k, 4], scores [k], labels [k]) from the selected (b, c, n) rows."""
    b, c, n = selected.T
    return [(boxes[i, n[b == i]], scores[i, c[b == i], n[b == i]], c[b == i]) for i in range(len(boxes))]


def evaluate(model: nn.Module, split: shapes.Detections) -> dict:
    from edgec.metrics.detection import coco_map

    return coco_map(predict(model, split.x), split.boxes, split.labels, NUM_CLASSES)
