"""ONNX models not exported from PyTorch (built with onnx.helper) compile and match ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec.runtime as rt
from edgec.compiler import compile_model

RNG = np.random.default_rng(42)


def _init(name: str, *shape: int, scale: float = 0.3, positive: bool = False) -> onnx.TensorProto:
    values = RNG.random(shape) + 0.5 if positive else RNG.standard_normal(shape) * scale
    return numpy_helper.from_array(values.astype(np.float32), name)


def cnn_model() -> onnx.ModelProto:
    """Conv -> BatchNormalization -> Clip (ReLU6) -> HardSwish -> MaxPool -> GlobalAveragePool -> Gemm -> Softmax."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], name="bn",
                         epsilon=1e-5),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["clip"], name="relu6"),
        helper.make_node("HardSwish", ["clip"], ["hs"], name="hardswish"),
        helper.make_node("MaxPool", ["hs"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["mp"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], name="fc", transB=1),
        helper.make_node("Softmax", ["fc"], ["probs"], name="softmax", axis=-1),
    ]
    inits = [_init("w", 8, 3, 3, 3), _init("b", 8), _init("gamma", 8, positive=True), _init("beta", 8),
             _init("mean", 8), _init("var", 8, positive=True), numpy_helper.from_array(np.float32(0.0), "lo"),
             numpy_helper.from_array(np.float32(6.0), "hi"), _init("fc_w", 5, 8), _init("fc_b", 5)]
    graph = helper.make_graph(nodes, "handbuilt_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                      [2, 3, 16, 16])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [2, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx.helper")


def transformer_block_model() -> onnx.ModelProto:
    """LayerNormalization -> MatMul (QK^T) -> Softmax -> MatMul (V) + residual, two outputs."""
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln_g", "ln_b"], ["ln"], name="ln", axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["ln", "wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["ln", "wk"], ["k"], name="k_proj"),
        helper.make_node("MatMul", ["ln", "wv"], ["v"], name="v_proj"),
        helper.make_node("Transpose", ["k"], ["kt"], name="k_t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"], name="scale"),
        helper.make_node("Softmax", ["scaled"], ["attn"], name="attn", axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["ctx"], name="context"),
        helper.make_node("Add", ["ctx", "x"], ["y"], name="residual"),
    ]
    d = 16
    inits = [_init("ln_g", d, positive=True), _init("ln_b", d), _init("wq", d, d), _init("wk", d, d),
             _init("wv", d, d), numpy_helper.from_array(np.float32(d ** -0.5), "scale")]
    graph = helper.make_graph(nodes, "handbuilt_attention",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 7, d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 7, d]),
                               helper.make_tensor_value_info("attn", TensorProto.FLOAT, [2, 7, 7])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx.helper")


@pytest.mark.parametrize("build, shape", [(cnn_model, (2, 3, 16, 16)), (transformer_block_model, (2, 7, 16))])
@pytest.mark.parametrize("backend", ["tvm", "ort"])
def test_handbuilt_matches_onnxruntime(tmp_path, build, shape, backend):
    model = build()
    onnx.checker.check_model(model)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    x = RNG.standard_normal(shape).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    artifact = compile_model(path, "cpu", tmp_path / "model.edgec", backend=backend).path
    module = rt.load(artifact)
    got = module.run({"x": x})
    assert list(got) == [o.name for o in model.graph.output]
    for name, want in zip(got, expected):
        assert got[name].shape == want.shape
        assert np.abs(got[name] - want).max() < 1e-4, name
