"""Deterministic training of zoo networks, with trained weights cached beside this file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgec.metrics.accuracy import top1
from edgec.zoo import data
from edgec.zoo.recipe import SEED, TRAIN_THREADS, architecture_key
from edgec.zoo.registry import ZooEntry, get

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs (first output for multi-output models) for all of x, in eval mode."""
    model.eval()
    outs = [model(torch.from_numpy(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat([o[0] if isinstance(o, (tuple, list)) else o for o in outs]).numpy()


def train(entry: ZooEntry, log=print) -> tuple[nn.Module, dict]:
    """Train `entry` from a fixed seed with Adam; returns the eval-mode model and its metrics."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    try:
        split = entry.load_data()
        model = entry.build()
        x = torch.from_numpy(split.x_train)
        y = torch.from_numpy(split.y_train)
        opt = torch.optim.Adam(model.parameters(), lr=entry.lr, weight_decay=entry.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=entry.epochs)
        gen = torch.Generator().manual_seed(SEED)
        loss_fn = nn.CrossEntropyLoss()
        start = time.perf_counter()
        for epoch in range(entry.epochs):
            model.train()
            order = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(0, len(x), entry.batch_size):
                idx = order[i:i + entry.batch_size]
                opt.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            sched.step()
            if log and (epoch + 1) % max(1, entry.epochs // 5) == 0:
                log(f"{entry.name}: epoch {epoch + 1}/{entry.epochs} loss {total / len(x):.4f}")
        seconds = time.perf_counter() - start
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    model.eval()
    test_scores = predict(model, split.x_test)
    metrics = {
        "name": entry.name,
        "test_accuracy": top1(test_scores, split.y_test),
        "train_accuracy": top1(predict(model, split.x_train), split.y_train),
        "n_train": int(len(split.x_train)),
        "n_test": int(len(split.x_test)),
        "epochs": entry.epochs,
        "train_seconds": round(seconds, 2),
        "architecture": architecture_key(model),
        "torch_version": torch.__version__,
    }
    if entry.task == "segmentation":
        metrics["test_miou"] = data.mean_iou(test_scores, split.y_test, split.num_classes)
    return model, metrics


def _paths(name: str) -> tuple[Path, Path]:
    return WEIGHTS_DIR / f"{name}.pt", WEIGHTS_DIR / f"{name}.json"


def cached_metrics(name: str) -> dict | None:
    """Metrics saved with the cached weights, or None when there are none."""
    path = _paths(name)[1]
    return json.loads(path.read_text()) if path.exists() else None


def load_trained(name: str) -> nn.Module:
    """The trained network from models/weights/. Never trains: missing weights, or weights trained for
    another architecture than the code builds, are an error naming the command that retrains them."""
    from edgec.errors import EdgecError

    entry = get(name)
    weights_path, _ = _paths(name)
    model = entry.build()
    metrics = cached_metrics(name)
    retrain = f"retrain it with `edgec zoo train {name}` (deterministic; commit models/weights/{name}.*)"
    if not metrics or not weights_path.exists():
        raise EdgecError(f"zoo network '{name}' has no trained weights in {WEIGHTS_DIR}; {retrain}")
    if metrics["architecture"] != architecture_key(model):
        raise EdgecError(f"zoo network '{name}': {weights_path.name} was trained for another architecture "
                         f"(weights {metrics['architecture']}, code {architecture_key(model)}); {retrain}")
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    return model.eval()


def train_and_save(name: str, log=print) -> nn.Module:
    """Train `name` and replace its weights and metrics in models/weights/ (`edgec zoo train`, the only writer)."""
    from edgec.files import write_atomic

    entry = get(name)
    if entry.weights_from:  # the same parameters as another network's: its trained weights
        model = entry.build()
        model.load_state_dict(load_trained(entry.weights_from).state_dict())
        model, metrics = model.eval(), dict(cached_metrics(entry.weights_from), name=name)
    else:
        model, metrics = (entry.fit or train)(entry, log=log)
    weights_path, metrics_path = _paths(name)
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    write_atomic(weights_path, lambda tmp: torch.save(model.state_dict(), tmp))
    write_atomic(metrics_path, lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n"))
    return model
