"""Ops TVM's ONNX importer lacks but the ONNX spec defines as functions compile on TVM through their spec bodies
(backends/tvm/expand_functions.py), each checked against ONNX Runtime on the unexpanded onnx.helper graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec.runtime as rt
from edgec.backends.tvm import expand_functions
from edgec.compiler import compile_model


def _graph(node, inputs, output_shape, opset=17, inits=()):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, output_shape)],
                              initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
CASES = {
    "Celu": (_graph(helper.make_node("Celu", ["x"], ["y"], alpha=0.7), [("x", TensorProto.FLOAT, X.shape)], X.shape),
             {"x": X}),
    "CenterCropPad": (_graph(helper.make_node("CenterCropPad", ["x", "shape"], ["y"], axes=[2, 3]),
                             [("x", TensorProto.FLOAT, X.shape)], [2, 3, 5, 10], opset=18,
                             inits=[numpy_helper.from_array(np.array([5, 10], np.int64), "shape")]), {"x": X}),
    "Swish": (_graph(helper.make_node("Swish", ["x"], ["y"], alpha=1.5), [("x", TensorProto.FLOAT, X.shape)],
                     X.shape, opset=24), {"x": X}),
    "SoftmaxCrossEntropyLoss": (_graph(helper.make_node("SoftmaxCrossEntropyLoss", ["x", "labels"], ["y"],
                                                        reduction="mean"), [("x", TensorProto.FLOAT, [4, 10])], [],
                                       inits=[numpy_helper.from_array(np.array([1, 0, 9, 3], np.int64), "labels")]),
                                {"x": RNG.standard_normal((4, 10)).astype(np.float32)}),
}


@pytest.mark.parametrize("op", sorted(CASES))
def test_function_op_compiles_on_tvm_and_matches_ort(op, tmp_path):
    model, feeds = CASES[op]
    path = tmp_path / f"{op}.onnx"
    onnx.save(model, path)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    result = compile_model(path, "cpu", tmp_path / f"{op}.edgec", validate=False)
    assert f"expand_functions:{op}" in result.manifest["backend_config"]["lowered"]
    got = next(iter(rt.load(result.path).run(feeds).values()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_only_ops_tvm_lacks_are_expanded_and_the_input_is_untouched():
    model, _ = CASES["Celu"]
    before = model.SerializeToString()
    same, done = expand_functions.run(model, {"Celu"})  # "supported": nothing to do
    assert same is model and done == []
    expanded, done = expand_functions.run(model, set())
    assert done == ["Celu"] and "Celu" not in {n.op_type for n in expanded.graph.node}
    assert model.SerializeToString() == before


def test_an_op_without_a_function_body_stays_and_is_named():
    model = _graph(helper.make_node("LpNormalization", ["x"], ["y"]), [("x", TensorProto.FLOAT, X.shape)], X.shape)
    same, done = expand_functions.run(model, set())
    assert same is model and done == []
