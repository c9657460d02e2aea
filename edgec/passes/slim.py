"""onnxslim's graph simplification: its symbolic shape inference folds Shape -> Gather -> Concat -> Reshape /
Pad / Expand chains that only depend on static dims, then constant folding, dead-node removal, common
subexpressions and its fusions (Pad+Conv, Conv+BN/Add/Mul, Gemm+Mul/Add, Concat+Reshape, reduce chains).
It leaves the opset's standard ops (its Gelu fusion is off by default). edgec's other passes run after it and
fold what it exposes; the model's inputs, outputs and their names are kept.

Two departures from `onnxslim.slim(model)`:
- not its MatMul+Add -> Gemm: at static shapes it turns a 3-d MatMul+Add into Reshape, Gemm, Reshape (three
  nodes for two); edgec's fuse_matmul_add fuses the 2-d ones;
- weights of HIDDEN_ELEMENTS elements or more are shown to it as graph inputs of the same shape, and become
  weights again after: onnxslim serialises the whole model for each of its ~40 shape inferences (GPT-2's
  150 MB embedding: 29 s of a 2-layer GPT-2's 30), and no shape chain reads a weight that large.
A model with a training-mode Dropout is left alone (onnxslim removes every Dropout; that one is random), and so
is one onnxslim fails on (a note says why). Shapes are inferred again afterwards with ONNX's inference: onnxslim's
own annotates an uneven Split's outputs wrongly. Nodes onnxslim rebuilt keep the names of those they replace.
"""

import collections
import contextlib
import io
import math

import onnx
import onnx_ir as ir

from edgec.frontend.loader import infer_shapes, names_read
from edgec.passes.base import PassContext, register
from edgec.passes.eliminate_identity import is_inference_dropout

HIDDEN_ELEMENTS = 1 << 20


@register("slim")
def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    import onnxslim

    if _has_training_dropout(model):
        ctx.notes.append("slim skipped: the model has a training-mode Dropout, which onnxslim would remove")
        return model
    original, model = model, onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inputs = {v.name for v in graph.input}
    hidden = [t for t in graph.initializer if math.prod(t.dims) >= HIDDEN_ELEMENTS and t.name not in inputs]
    kept = [t for t in graph.initializer if math.prod(t.dims) < HIDDEN_ELEMENTS or t.name in inputs]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in hidden)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # onnxslim prints a summary table when verbose
            slimmed = onnxslim.slim(model, skip_fusion_patterns=["FusionGemm"])
    except Exception as e:  # onnxslim is an optimization: where it fails, edgec's own passes still run
        ctx.notes.append(f"slim skipped: onnxslim failed ({type(e).__name__}: {' '.join(str(e).split())[:200]})")
        return original
    # onnxslim's own shape inference can annotate wrongly (uneven Split outputs): infer again with ONNX's,
    # while the large weights are still inputs
    del slimmed.graph.value_info[:]
    given = {v.name: v for v in original.graph.output}
    for value in slimmed.graph.output:
        if value.name in given:
            value.CopyFrom(given[value.name])
    slimmed = infer_shapes(slimmed, ctx.model_path)
    names = {t.name for t in hidden}
    real_inputs = [v for v in slimmed.graph.input if v.name not in names]
    del slimmed.graph.input[:]
    slimmed.graph.input.extend(real_inputs)
    used = {v.name for v in slimmed.graph.output}.union(*(names_read(n) for n in slimmed.graph.node))
    slimmed.graph.initializer.extend(t for t in hidden if t.name in used)
    _keep_node_names(original.graph, slimmed.graph)
    return slimmed


def _keep_node_names(before: onnx.GraphProto, after: onnx.GraphProto) -> None:
    """Give a node onnxslim rebuilt (a Conv it fused a BN into is named after its output tensor) the name of the
    node it replaced: the one node of the same op reading the same first input. Errors, engine reports and
    `compare` name nodes as the user's file does."""
    keys = [(n.op_type, n.input[0] if n.input else "") for n in before.node]
    counts = collections.Counter(keys)
    unique = {key: n.name for key, n in zip(keys, before.node) if counts[key] == 1 and n.name}
    taken = {n.name for n in after.node}
    originals = {n.name for n in before.node}
    for node in after.node:
        name = unique.get((node.op_type, node.input[0] if node.input else ""))
        if name and node.name not in originals and name not in taken:
            taken.discard(node.name)
            node.name = name
            taken.add(name)


def _has_training_dropout(model: onnx.ModelProto) -> bool:
    if not any(n.op_type == "Dropout" for n in model.graph.node):
        return False
    ir_model = ir.from_proto(model)
    opset = ir_model.opset_imports.get("", 1)
    return any(n.op_type == "Dropout" and not is_inference_dropout(n, opset) for n in ir_model.graph)
