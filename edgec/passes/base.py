"""What every graph pass shares: its context, the record the manager keeps of it, and the registry.

A pass is one module with one function `run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto`,
registered by name with `@register("name")` (onnx-ir passes: `@register` over `@ir_pass`, whose body
edits an onnx-ir model in place and returns whether it changed it, as onnx_ir's PassResult.modified).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import onnx

from edgec.errors import EdgecError


@dataclass
class PassContext:
    """What passes may read: the target opset, the model's file name for error messages, options.

    options: "validation_inputs" ({input name: array}, replaces the random inputs), "atol" / "rtol"
    (validation tolerance, defaults 1e-5 / 1e-4). Passes append human-readable remarks to `notes`.
    """

    model_path: str = "<model>"
    opset: int | None = None
    validate: bool = True
    options: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    params_bytes_before: int = 0
    params_bytes_after: int = 0
    max_abs_err: float | None = None  # vs the model before this pass; None when not validated
    validate_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    modified: bool = True  # whether the pass changed the model (onnx_ir's PassResult.modified)

    def to_json(self) -> dict:
        return {"name": self.name, "seconds": round(self.seconds, 4), "nodes_before": self.nodes_before,
                "nodes_after": self.nodes_after, "ops_before": self.ops_before, "ops_after": self.ops_after,
                "params_bytes_before": self.params_bytes_before, "params_bytes_after": self.params_bytes_after,
                "max_abs_err": self.max_abs_err, "validate_seconds": round(self.validate_seconds, 4),
                "notes": self.notes, "modified": self.modified}


Pass = Callable[[onnx.ModelProto, PassContext], onnx.ModelProto]
REGISTRY: dict[str, Pass] = {}


def register(name: str) -> Callable[[Pass], Pass]:
    """Register a pass under `name` (`edgec optimize --passes NAME`)."""

    def add(run: Pass) -> Pass:
        if name in REGISTRY:
            raise ValueError(f"pass '{name}' is registered twice")
        REGISTRY[name] = run
        return run

    return add


def available_passes() -> list[str]:
    return sorted(REGISTRY)


def get_pass(name: str) -> Pass:
    if name not in REGISTRY:
        raise EdgecError(f"unknown pass '{name}'; available passes: {', '.join(available_passes())}")
    return REGISTRY[name]
