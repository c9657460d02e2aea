"""The pipeline runner with its per-pass record, and load-optimize-save."""

from __future__ import annotations

import collections
import math
import os
import time

import onnx
import onnx_ir as ir

from edgec.passes.base import PassContext, PassRecord, get_pass

# Order matters: upgrade the opset first (later rules assume modern op signatures); let onnxslim fold the
# shape chains static dims allow and apply its fusions (edgec's own passes then go further); drop Identity/Dropout and
# fold constants so each BatchNormalization sits right after its producer; MatMul+Add -> Gemm so BN folds into
# that too; then cancel layout pairs, fold what fusion exposed, merge duplicates, sweep and re-infer shapes.
# A BN that cannot fuse stays one node, as in ORT and onnxslim: batchnorm_to_affine (Mul + Add) is opt-in.
DEFAULT_PIPELINE = (
    "normalize_opset",
    "infer_shapes",
    "slim",
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
    beyond tolerance raises an error naming the pass and the output; a pass that changed nothing (a protobuf
    pass's result serializes to the same bytes; an onnx-ir pass reports no change) keeps the error of the
    model before it without running again.
    """
    from edgec.passes.validation import Checker

    passes = [(name, get_pass(name)) for name in names]
    checker = Checker(model, ctx) if ctx.validate and passes else None
    last_error = 0.0  # of the last model validated
    model = onnx.ModelProto.FromString(model.SerializeToString())  # onnx-ir edits would reach the caller's protos
    records = []
    for name, run in passes:
        before, before_bytes, notes_at = op_histogram(model), params_bytes(model), len(ctx.notes)
        start = time.perf_counter()
        on_ir = getattr(run, "on_ir", None)
        if on_ir is None:
            given = _as_proto(model)
            model = run(given, ctx)
            modified = model is not given and model.SerializeToString() != given.SerializeToString()
        else:
            model = ir.from_proto(model) if isinstance(model, onnx.ModelProto) else model
            modified = bool(on_ir(model, ctx))
        seconds, after = time.perf_counter() - start, op_histogram(model)
        record = PassRecord(name, seconds, sum(before.values()), sum(after.values()), before, after, before_bytes,
                            params_bytes(model), modified=modified)
        if checker is not None:
            start = time.perf_counter()
            if modified:  # an unchanged model keeps its error (GPT-2: 9 of 13 passes, 1.2-3 s of ORT each)
                last_error = checker.check(_as_proto(model), name)
            record.max_abs_err = last_error
            record.validate_seconds = time.perf_counter() - start
        record.notes = ctx.notes[notes_at:]
        records.append(record)
    return _as_proto(model), records


def optimize_file(src: str | os.PathLike, dst: str | os.PathLike, names=DEFAULT_PIPELINE, validate: bool = True,
                  opset: int | None = None) -> list[PassRecord]:
    """`edgec optimize` as a library call: load `src`, run the passes, write `dst` atomically."""
    from edgec.files import write_atomic
    from edgec.frontend.loader import load_model

    model, records = run_pipeline(load_model(src), names,
                                  PassContext(model_path=str(src), opset=opset, validate=validate))
    write_atomic(dst, lambda tmp: onnx.save_model(model, tmp))
    return records
