"""The pass registry and the pipeline runner with its per-pass record."""

from __future__ import annotations

import collections
import importlib
import pkgutil
import time
from dataclasses import dataclass, field
from typing import Callable

import onnx

from edgec.errors import EdgecError

_NOT_PASSES = {"manager"}
DEFAULT_PIPELINE = ("infer_shapes", "fold_constants", "infer_shapes")


@dataclass
class PassContext:
    """What passes may read: the target opset, the model's file name for error messages, options."""

    model_path: str = "<model>"
    opset: int | None = None
    validate: bool = True
    options: dict = field(default_factory=dict)


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]

    def to_json(self) -> dict:
        return {"name": self.name, "seconds": round(self.seconds, 4), "nodes_before": self.nodes_before,
                "nodes_after": self.nodes_after, "ops_before": self.ops_before, "ops_after": self.ops_after}


def available_passes() -> list[str]:
    """Every module in edgec/passes/ (but this one) is a pass, registered under its file name."""
    import edgec.passes

    return sorted(m.name for m in pkgutil.iter_modules(edgec.passes.__path__) if m.name not in _NOT_PASSES)


def get_pass(name: str) -> Callable[[onnx.ModelProto, PassContext], onnx.ModelProto]:
    if name not in available_passes():
        raise EdgecError(f"unknown pass '{name}'; available passes: {', '.join(available_passes())}")
    return importlib.import_module(f"edgec.passes.{name}").run


def _op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


def run_pipeline(model: onnx.ModelProto, names, ctx: PassContext) -> tuple[onnx.ModelProto, list[PassRecord]]:
    """Apply passes in order; returns the final model and one record per pass."""
    passes = [(name, get_pass(name)) for name in names]
    records = []
    for name, run in passes:
        before = _op_histogram(model)
        start = time.perf_counter()
        model = run(model, ctx)
        records.append(PassRecord(name, time.perf_counter() - start, sum(before.values()),
                                  len(model.graph.node), before, _op_histogram(model)))
    return model, records
