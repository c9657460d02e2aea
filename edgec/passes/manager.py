"""The pass registry, the pipeline runner with its per-pass record, and load-optimize-save."""

from __future__ import annotations

import collections
import importlib
import math
import os
import pkgutil
import time
from dataclasses import dataclass, field
from typing import Callable

import onnx
import onnx_ir as ir

from edgec.errors import EdgecError

_NOT_PASSES = {"manager", "validation"}

# Order matters: upgrade the opset first (later rules assume modern op signatures); drop Identity/Dropout and
# fold constants so each BatchNormalization sits right after its producer; MatMul+Add -> Gemm so BN folds into
# that too; then cancel layout pairs, fold what fusion exposed, merge duplicates, sweep and re-infer shapes.
# A BN that cannot fuse stays one node, as in ORT and onnxslim: batchnorm_to_affine (Mul + Add) is opt-in.
DEFAULT_PIPELINE = (
    "normalize_opset",
    "infer_shapes",
    "eliminate_identity",
    "fold_constants",
    "fuse_matmul_add",
    "fuse_batchnorm",
    "cancel_transpose_reshape",
    "fold_constants",
    "eliminate_common_subexpressions",
    "dedup_initializers",
    "eliminate_dead",
    "infer_shapes",
)


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

    def to_json(self) -> dict:
        return {"name": self.name, "seconds": round(self.seconds, 4), "nodes_before": self.nodes_before,
                "nodes_after": self.nodes_after, "ops_before": self.ops_before, "ops_after": self.ops_after,
                "params_bytes_before": self.params_bytes_before, "params_bytes_after": self.params_bytes_after,
                "max_abs_err": self.max_abs_err, "validate_seconds": round(self.validate_seconds, 4),
                "notes": self.notes}


def available_passes() -> list[str]:
    """Every public module in edgec/passes/ (bar the manager and validation) is a pass, named by its file."""
    import edgec.passes

    return sorted(m.name for m in pkgutil.iter_modules(edgec.passes.__path__)
                  if m.name not in _NOT_PASSES and not m.name.startswith("_"))


def get_pass(name: str) -> Callable[[onnx.ModelProto, PassContext], onnx.ModelProto]:
    if name not in available_passes():
        raise EdgecError(f"unknown pass '{name}'; available passes: {', '.join(available_passes())}")
    return importlib.import_module(f"edgec.passes.{name}").run


def op_histogram(model: onnx.ModelProto | ir.Model) -> dict[str, int]:
    """{op type: count} over the main graph's nodes."""
    nodes = model.graph.node if isinstance(model, onnx.ModelProto) else model.graph
    return dict(sorted(collections.Counter(n.op_type for n in nodes).items()))


def params_bytes(model: onnx.ModelProto | ir.Model) -> int:
    """Bytes of weight data: initializers plus Constant nodes' tensors (strings not counted)."""
    if isinstance(model, onnx.ModelProto):
        tensors = list(model.graph.initializer)
        tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
        return sum(math.prod(t.dims) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
                   for t in tensors if t.data_type != onnx.TensorProto.STRING)
    tensors = [v.const_value for v in model.graph.initializers.values()]
    tensors += [n.attributes["value"].as_tensor() for n in model.graph
                if n.op_type == "Constant" and "value" in n.attributes]
    return sum(t.nbytes for t in tensors if t is not None and t.dtype != ir.DataType.STRING)


def _as_proto(model: onnx.ModelProto | ir.Model) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else ir.to_proto(model)


def run_pipeline(model: onnx.ModelProto, names, ctx: PassContext) -> tuple[onnx.ModelProto, list[PassRecord]]:
    """Apply passes in order; returns the final model and one record per pass. `model` is not modified.

    Consecutive onnx-ir passes (those made with `_ir_util.ir_pass`) share one onnx-ir model; it becomes a
    ModelProto again only for a protobuf pass, for validation, and at the end. With ctx.validate, each
    pass's result is run with ONNX Runtime on the same inputs as the model before it, and a difference
    beyond tolerance raises an error naming the pass and the output.
    """
    from edgec.passes import validation

    passes = [(name, get_pass(name)) for name in names]
    checker = validation.Checker(model, ctx) if ctx.validate and passes else None
    model = onnx.ModelProto.FromString(model.SerializeToString())  # onnx-ir edits would reach the caller's protos
    records = []
    for name, run in passes:
        before, before_bytes, notes_at = op_histogram(model), params_bytes(model), len(ctx.notes)
        start = time.perf_counter()
        on_ir = getattr(run, "on_ir", None)
        if on_ir is None:
            model = run(_as_proto(model), ctx)
        else:
            model = ir.from_proto(model) if isinstance(model, onnx.ModelProto) else model
            on_ir(model, ctx)
        seconds, after = time.perf_counter() - start, op_histogram(model)
        record = PassRecord(name, seconds, sum(before.values()), sum(after.values()), before, after, before_bytes,
                            params_bytes(model))
        if checker is not None:
            start = time.perf_counter()
            record.max_abs_err = checker.check(_as_proto(model), name)
            record.validate_seconds = time.perf_counter() - start
        record.notes = ctx.notes[notes_at:]
        records.append(record)
    return _as_proto(model), records


def optimize_file(src: str | os.PathLike, dst: str | os.PathLike, names=DEFAULT_PIPELINE, validate: bool = True,
                  opset: int | None = None) -> list[PassRecord]:
    """`edgec optimize` as a library call: load `src`, run the passes, write `dst` atomically."""
    from edgec.frontend.loader import load_model
    from edgec.runtime.artifact import write_atomic

    model, records = run_pipeline(load_model(src), names,
                                  PassContext(model_path=str(src), opset=opset, validate=validate))
    write_atomic(dst, lambda tmp: onnx.save_model(model, tmp))
    return records
