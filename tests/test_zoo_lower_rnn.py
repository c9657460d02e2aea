"""lower_rnn: RNN/GRU/LSTM unrolled into plain ops give the same numbers as the recurrent op itself
(ONNX's reference implementation, or ONNX Runtime where sequence_lens matter), and what it cannot
lower fails naming the node and op."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edgec import runtime
from edgec.backends.tvm import lower_rnn
from edgec.compiler import compile_model
from edgec.errors import UnsupportedError
from edgec.frontend.loader import infer_shapes
from edgec.passes import PassContext

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
T, B, I, H = 5, 3, 4, 6  # noqa: E741 - ONNX's names for the RNN dims


def recurrent_model(op: str, direction: str = "forward", layout: int = 0, initial_state: bool = False,
                    peepholes: bool = False, lengths: np.ndarray | None = None, weights_as_inputs: bool = False,
                    **attrs) -> tuple[onnx.ModelProto, dict]:
    """A one-node model with random weights; returns it and its input feeds."""
    rng = np.random.default_rng(0)
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    x = rng.standard_normal((B, T, I) if layout else (T, B, I), dtype=np.float32)
    params = {"W": rng.standard_normal((dirs, g * H, I), dtype=np.float32) * 0.5,
              "R": rng.standard_normal((dirs, g * H, H), dtype=np.float32) * 0.5,
              "B": rng.standard_normal((dirs, 2 * g * H), dtype=np.float32) * 0.5}
    names = ["X", "W", "R", "B", "", "", "", ""]
    if lengths is not None:
        params["sequence_lens"] = lengths.astype(np.int32)
        names[4] = "sequence_lens"
    state = (B, dirs, H) if layout else (dirs, B, H)
    if initial_state:
        params["initial_h"] = rng.standard_normal(state, dtype=np.float32)
        names[5] = "initial_h"
        if op == "LSTM":
            params["initial_c"] = rng.standard_normal(state, dtype=np.float32)
            names[6] = "initial_c"
    if peepholes:
        params["P"] = rng.standard_normal((dirs, 3 * H), dtype=np.float32) * 0.5
        names[7] = "P"
    while not names[-1]:
        names.pop()
    outputs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    node = helper.make_node(op, names, outputs, name=f"my_{op.lower()}", hidden_size=H, direction=direction,
                            layout=layout, **attrs)
    feeds = {"X": x, **(params if weights_as_inputs else {})}
    inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for k, v in feeds.items()]
    initializers = [] if weights_as_inputs else [numpy_helper.from_array(v, k) for k, v in params.items()]
    shapes = {"Y": (B, T, dirs, H) if layout else (T, dirs, B, H), "Y_h": state, "Y_c": state}
    graph = helper.make_graph([node], "rnn", inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o])
                                                      for o in outputs], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), feeds


def lowered(model: onnx.ModelProto) -> onnx.ModelProto:
    result = lower_rnn.run(infer_shapes(model, "test.onnx"), PassContext(model_path="test.onnx"))
    assert not lower_rnn.has_recurrent_ops(result)
    onnx.checker.check_model(result)
    return result


def run_ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


CASES = [(op, direction, initial) for op in GATES for direction in ("forward", "reverse", "bidirectional")
         for initial in (False, True)]


@pytest.mark.parametrize("op,direction,initial_state", CASES)
def test_matches_reference(op, direction, initial_state):
    model, feeds = recurrent_model(op, direction, initial_state=initial_state)
    expected = ReferenceEvaluator(model).run(None, feeds)
    for got, want in zip(run_ort(lowered(model), feeds), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", list(GATES))
def test_batch_first_layout_and_weights_given_as_inputs(op):
    model, feeds = recurrent_model(op, "bidirectional", layout=1, initial_state=True, weights_as_inputs=True)
    expected = ReferenceEvaluator(model).run(None, feeds)
    got = run_ort(lowered(model), feeds)
    assert got[0].shape == (B, T, 2, H)
    for g, want in zip(got, expected):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)


def test_gru_without_linear_before_reset_and_lstm_peepholes_and_clip():
    for op, attrs in (("GRU", {"linear_before_reset": 0}), ("GRU", {"linear_before_reset": 1, "clip": 0.7}),
                      ("LSTM", {"peepholes": True, "initial_state": True, "clip": 1.5})):
        model, feeds = recurrent_model(op, **attrs)
        expected = run_ort(model, feeds)
        for got, want in zip(run_ort(lowered(model), feeds), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", list(GATES))
def test_short_sequence_lengths_keep_state_and_zero_the_output(op):
    model, feeds = recurrent_model(op, initial_state=True, lengths=np.array([5, 2, 1]))
    got, expected = run_ort(lowered(model), feeds), run_ort(model, feeds)
    assert not got[0][2:, :, 1].any() and not got[0][1:, :, 2].any()
    for g, want in zip(got, expected):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)


def test_pytorch_zero_initial_state_needs_no_shape_arithmetic(tmp_path):
    """The exported zoo LSTM builds h0/c0 from Shape -> ConstantOfShape(0); lowering drops that subgraph."""
    from edgec.frontend.export import export_onnx
    from edgec.zoo import registry, train

    net = train.load_trained("lstm")
    path = export_onnx(net, registry.get("lstm").input_shape, tmp_path / "lstm.onnx")
    model = lowered(infer_shapes(onnx.load(path), path))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Shape", "ConstantOfShape", "Expand"}, ops
    x = registry.get("lstm").load_data().x_test[:7]
    np.testing.assert_allclose(run_ort(model, {"input": x})[0], train.predict(net, x), atol=1e-5)


def test_tvm_backend_lowers_and_records_it(tmp_path):
    model, feeds = recurrent_model("GRU", "bidirectional", initial_state=True)
    del model.graph.output[0]  # only Y_h: the unrolled Y is dropped as dead code
    onnx.save(model, tmp_path / "gru.onnx")
    result = compile_model(tmp_path / "gru.onnx", target="cpu", output=tmp_path / "gru.edgec", backend="tvm")
    assert result.manifest["backend_config"]["lowered"] == ["lower_rnn"]
    (got,) = runtime.load(result.path)(feeds["X"])
    np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, feeds)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attrs,message", [
    ({"input_forget": 1}, "input_forget=1"),
    ({"activations": ["Sigmoid", "Tanh", "ScaledTanh"]}, "activation 'ScaledTanh'"),
])
def test_unsupported_attributes_name_node_and_op(attrs, message):
    model, _ = recurrent_model("LSTM", **attrs)
    with pytest.raises(UnsupportedError, match=rf"node 'my_lstm' \(op LSTM\): {message}.*--backend ort"):
        lowered(model)


def test_symbolic_sequence_length_is_refused():
    model, _ = recurrent_model("GRU")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "time"
    with pytest.raises(UnsupportedError, match=r"node 'my_gru' \(op GRU\): the sequence length .* is not static"):
        lowered(model)
