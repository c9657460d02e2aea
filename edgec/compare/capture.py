"""Capture every intermediate tensor of a model on one backend.

Each node output becomes a graph output, so the backend must compute and return it. For ONNX Runtime
that keeps every node's own kernel (ORT does not fuse away a node whose output is a graph output).
For TVM it breaks Relax's operator fusion at every exposed tensor: each value is then produced by an
unfused kernel. Fusion in TVM does not reorder the arithmetic of the fused elementwise epilogues, so
in fp32 the exposed values are the ones the fused artifact computes; what the comparison cannot see is
a difference that exists only inside one fused kernel (e.g. a fused QDQ pair), which shows up at the
kernel's output tensor instead.
"""

from __future__ import annotations

import numpy as np
import onnx

from edgec.frontend.loader import graph_inputs

SKIPPED_OPS = {"Constant", "ConstantOfShape", "Shape", "Size"}


def exposed(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of `model` whose graph outputs are the original outputs plus every typed node output."""
    model = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    out = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in out.graph.output}
    names = []
    for node in out.graph.node:
        if node.op_type in SKIPPED_OPS:
            continue
        for name in node.output:
            value = known.get(name)
            if name and value is not None and value.type.tensor_type.elem_type:
                names.append(name)
                if name not in present:
                    out.graph.output.append(value)
                    present.add(name)
    return out, names


def producers(model: onnx.ModelProto) -> dict[str, tuple[str, str, int]]:
    """tensor name -> (node name, op type, topological index of the node)."""
    return {out: (node.name or f"#{i}", node.op_type, i) for i, node in enumerate(model.graph.node)
            for out in node.output if out}


def run_onnxruntime(model: onnx.ModelProto, feeds_list: list[dict]) -> list[dict[str, np.ndarray]]:
    """Run with ONNX Runtime, graph optimizations off: the model's own semantics, node by node."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(names, feeds))) for feeds in feeds_list]


def run_backend(model: onnx.ModelProto, backend: str, precision: str, feeds_list: list[dict],
                model_path: str) -> list[dict[str, np.ndarray]]:
    """Compile the (already optimized, exposed) model with edgec for this host and run it."""
    from edgec.compiler import run_on_host

    return run_on_host(model, backend, feeds_list, model_path, precision)


def input_name(model: onnx.ModelProto, model_path: str) -> str:
    from edgec.errors import EdgecError

    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise EdgecError(f"{model_path}: compare feeds single-input models; this one has {len(inputs)} inputs")
    return inputs[0].name
