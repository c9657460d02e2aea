"""Expose every intermediate tensor of a model as a graph output, so a backend must compute and return it.

Used by `edgec compare` and by int8 layer sensitivity. For ONNX Runtime
that keeps every node's own kernel (ORT does not fuse away a node whose output is a graph output).
For TVM it breaks Relax's operator fusion at every exposed tensor: each value is then produced by an
unfused kernel. Fusion in TVM does not reorder the arithmetic of the fused elementwise epilogues, so
in fp32 the exposed values are the ones the fused artifact computes; what the comparison cannot see is
a difference that exists only inside one fused kernel (e.g. a fused QDQ pair), which shows up at the
kernel's output tensor instead.
"""

from __future__ import annotations

import onnx

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
