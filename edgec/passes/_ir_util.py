"""Small onnx-ir helpers shared by the passes (not a pass: the leading underscore keeps it unregistered)."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnx_ir as ir


def ir_pass(body):
    """Turn `body(ir_model, ctx) -> modified`, which edits an onnx-ir model in place and says whether it
    changed it, into `run(ModelProto, ctx) -> ModelProto`.

    The body stays reachable as `run.on_ir`: the manager chains such passes on one onnx-ir model instead of
    serializing to protobuf and back between them (most of a pass's cost on a large graph).
    """
    @functools.wraps(body)
    def run(model: onnx.ModelProto, ctx) -> onnx.ModelProto:
        ir_model = ir.from_proto(model)
        body(ir_model, ctx)
        return ir.to_proto(ir_model)

    run.on_ir = body
    return run


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's array when it is a fixed constant (initializer or Constant node, not a graph input)."""
    if value is None or value.is_graph_input():
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


class Namer:
    """Hands out value names not yet used anywhere in `graph`."""

    def __init__(self, graph: ir.Graph) -> None:
        self.taken = {v.name for v in graph.inputs} | set(graph.initializers)
        self.taken |= {v.name for node in ir.traversal.RecursiveGraphIterator(graph) for v in node.outputs}

    def __call__(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


def add_initializer(graph: ir.Graph, namer: Namer, base: str, array: np.ndarray) -> ir.Value:
    """Register `array` as a new initializer under a fresh name derived from `base`."""
    name = namer(base)
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
    value.shape, value.type = ir.Shape(array.shape), ir.TensorType(ir.DataType.from_numpy(array.dtype))
    graph.register_initializer(value)
    return value
