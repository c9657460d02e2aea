"""edgec.onnx_backend implements onnx.backend.base.Backend: ONNX's own node tests run against it
(a sample here; benchmarks/onnx_node_tests.py runs them all and prints the pass rate per backend)."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgec import onnx_backend
from edgec.errors import UnsupportedError

# ONNX node test cases by module (importing a module generates its cases) and the names to run here.
SAMPLE = {"relu": ["test_relu"], "add": ["test_add_bcast"], "conv": ["test_conv_with_strides_padding"],
          "maxpool": ["test_maxpool_2d_pads"], "gemm": ["test_gemm_default_no_bias"],
          "softmax": ["test_softmax_axis_1"], "averagepool": ["test_averagepool_2d_default"],
          "lstm": ["test_lstm_defaults", "test_lstm_with_peepholes"], "gru": ["test_gru_with_initial_bias"],
          "rnn": ["test_simple_rnn_defaults"]}


def _sample_cases():
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in SAMPLE:
            importlib.import_module(f"onnx.backend.test.case.node.{module}")
    wanted = {name for names in SAMPLE.values() for name in names}
    return {case.name: case for case in node._NodeTestCases if case.name in wanted}  # noqa: SLF001


CASES = _sample_cases()


@pytest.mark.parametrize("backend", ["ort", "tvm"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_node_test(name, backend):
    """As ONNX's backend test runner does it: prepare the one-op model, run each data set, compare."""
    case = CASES[name]
    rep = onnx_backend.BACKENDS[backend].prepare(case.model, "CPU")
    for inputs, expected in case.data_sets:
        outputs = rep.run(inputs)
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected):
            np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)


def _add_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])], "add",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_devices():
    assert onnx_backend.supports_device("CPU")
    assert not onnx_backend.supports_device("CUDA")


@pytest.mark.parametrize("backend", ["ort", "tvm"])
def test_prepare_then_run_with_list_or_dict(backend):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([10, 20, 30], dtype=np.float32)
    rep = onnx_backend.BACKENDS[backend].prepare(_add_model())
    assert rep.module.backend == backend
    (by_position,) = rep.run([a, b])
    np.testing.assert_array_equal(by_position, a + b)
    assert rep.run({"b": b, "a": a}).sum.tolist() == (a + b).tolist()
    np.testing.assert_array_equal(onnx_backend.run_model(_add_model(), [a, b])[0], a + b)


def test_op_tvm_lacks_fails_naming_node_and_op():
    graph = helper.make_graph([helper.make_node("Det", ["x"], ["d"], name="determinant")], "det",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
                              [helper.make_tensor_value_info("d", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedError, match=r"node 'determinant' \(op Det\), ai.onnx opset [0-9]+, is not "
                                               r"supported by the tvm backend"):
        onnx_backend.prepare(model)
    x = np.array([[2, 0, 0], [0, 3, 0], [0, 0, 4]], dtype=np.float32)
    assert onnx_backend.OrtOnnxBackend.run_model(model, [x])[0] == pytest.approx(24.0)
