"""int8 (calibrated QDQ) and fp16: determinism, per-channel scales, budgeted fallback, accuracy, artifacts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import edgec.runtime as rt
from edgec.compiler import compile_model
from edgec.errors import EdgecError
from edgec.quantize.calibration import VALIDATION_SAMPLES, calibration_inputs, validation_split
from edgec.quantize.fallback import quantize_within_budget
from edgec.quantize.fp16 import to_fp16
from edgec.quantize.int8 import Int8Scheme, quantize, scheme_for
from edgec.quantize.pipeline import Int8Options
from edgec.targets import resolve_target
from edgec.zoo import data


@pytest.fixture(scope="module")
def lenet(lenet_onnx):
    return onnx.load(lenet_onnx)


@pytest.fixture(scope="module")
def split():
    return data.digits(28, 1)


def _accuracy(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> float:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return float((session.run(None, {"input": x})[0].argmax(1) == y).mean())


def test_calibration_uses_training_split_in_fixed_order(lenet, split):
    feeds = calibration_inputs("digits", lenet, 16)
    assert len(feeds) == 16 and all(f["input"].shape == (1, 1, 28, 28) for f in feeds)
    assert np.array_equal(np.concatenate([f["input"] for f in feeds]), split.x_train[:16])


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_calibration_is_deterministic_and_keeps_accuracy(lenet, split, method):
    feeds = calibration_inputs("digits", lenet, 32)
    a, b = quantize(lenet, feeds, method), quantize(lenet, feeds, method)
    assert a.SerializeToString() == b.SerializeToString()
    assert 100 * (_accuracy(lenet, split.x_test, split.y_test) - _accuracy(a, split.x_test, split.y_test)) <= 1.0


def test_weights_are_symmetric_per_channel(lenet):
    q = quantize(lenet, calibration_inputs("digits", lenet, 16))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    original = {t.name: numpy_helper.to_array(t) for t in lenet.graph.initializer}
    dq = {n.output[0]: n for n in q.graph.node if n.op_type == "DequantizeLinear"}
    checked = 0
    for conv in (n for n in q.graph.node if n.op_type == "Conv"):
        node = dq[conv.input[1]]
        qweight, scale, zero = (inits[i] for i in node.input)
        w = original[node.input[0].removesuffix("_quantized")]
        assert qweight.dtype == np.int8 and scale.shape == (w.shape[0],) and not zero.any()
        expected = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 127.0
        np.testing.assert_allclose(scale, expected, rtol=1e-6)
        err = np.abs(qweight.astype(np.float32) * scale.reshape(-1, 1, 1, 1) - w)
        assert (err <= scale.reshape(-1, 1, 1, 1) / 2 + 1e-7).all()  # round to nearest: within half a step
        checked += 1
    assert checked == 2


@pytest.mark.parametrize("target, symmetric, expected", [
    ("x86-64-avx2", False, Int8Scheme("uint8", reduce_range=True)),  # vpmaddubsw saturates: 7-bit weights
    ("x86-64-avx512", False, Int8Scheme("uint8", reduce_range=False)),  # VNNI accumulates in int32
    ("aarch64", False, Int8Scheme("uint8", reduce_range=False)),
    ("x86-64-avx2", True, Int8Scheme("int8", reduce_range=False)),  # TensorRT: zero point 0
])
def test_scheme_follows_backend_and_target(target, symmetric, expected):
    assert scheme_for(resolve_target(target), symmetric) == expected


def test_reduced_range_weights_and_uint8_activations(lenet):
    q = quantize(lenet, calibration_inputs("digits", lenet, 16), scheme=Int8Scheme("uint8", reduce_range=True))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    original = {t.name: numpy_helper.to_array(t) for t in lenet.graph.initializer}
    dq = {n.output[0]: n for n in q.graph.node if n.op_type == "DequantizeLinear"}
    for conv in (n for n in q.graph.node if n.op_type in ("Conv", "Gemm")):
        qweight, scale, _ = (inits[i] for i in dq[conv.input[1]].input)
        w = original[dq[conv.input[1]].input[0].removesuffix("_quantized")]
        assert np.abs(qweight).max() == 64  # 2 x 255 x 64 = 32640: a vpmaddubsw pair sum fits int16
        np.testing.assert_allclose(scale, np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 64.0, rtol=1e-6)
        activation = dq[conv.input[0]]
        assert inits[activation.input[2]].dtype == np.uint8, conv.name


@pytest.mark.parametrize("budget", [1.0, 0.0])
def test_fallback_respects_the_budget(lenet, split, budget):
    feeds = [{"input": split.x_train[i:i + 1] * 0.3} for i in range(32)]  # ranges 3x too narrow: clipping
    clipped = quantize(lenet, feeds)
    x, y, _ = validation_split("digits", lenet)
    base = _accuracy(lenet, x, y)
    assert 100 * (base - _accuracy(clipped, x, y)) > 10  # the plain int8 model really is broken
    result = quantize_within_budget(lenet, feeds, x, y, budget)
    assert result.fp32_accuracy == base
    assert 100 * (base - result.int8_accuracy) <= budget
    assert result.int8_accuracy == _accuracy(result.model, x, y)
    units = {n for unit in result.sensitivity for n in unit.split("+")}
    assert result.kept_float and set(result.kept_float) <= units
    floats = {t.name for t in result.model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    for node in result.model.graph.node:  # kept layers compute in float: their weights stay float
        if node.name in result.kept_float and node.op_type in ("Conv", "Gemm"):
            assert node.input[1] in floats, node.name


def test_int8_artifact_on_ort_matches_within_one_point(lenet_onnx, split, tmp_path):
    result = compile_model(lenet_onnx, "cpu", tmp_path / "int8.edgec", backend="ort", precision="int8",
                           int8=Int8Options(calib="digits"))
    quant = result.manifest["quantization"]
    assert result.manifest["precision"] == "int8" and quant["calibration"] == {"data": "digits", "method": "minmax",
                                                                              "samples": 64}
    module = rt.load(result.path)
    logits = np.concatenate([module(split.x_test[i:i + 1])[0] for i in range(len(split.x_test))])
    fp32 = _accuracy(onnx.load(lenet_onnx), split.x_test, split.y_test)
    assert 100 * (fp32 - float((logits.argmax(1) == split.y_test).mean())) <= 1.0


def test_int8_needs_calibration(lenet_onnx, tmp_path):
    for backend in ("ort", "tvm"):  # TVM's int8 (true integer kernels) is tested in test_tvm_int8.py
        with pytest.raises(EdgecError, match="--precision int8 needs calibration data: add --calib digits"):
            compile_model(lenet_onnx, "cpu", tmp_path / f"{backend}.edgec", backend=backend, precision="int8")
    assert list(tmp_path.iterdir()) == []


def test_fp16_keeps_io_and_sensitive_ops_in_fp32(split, tmp_path):
    from tests.test_handbuilt import transformer_block_model

    model = transformer_block_model()
    half = to_fp16(model)
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [onnx.TensorProto.FLOAT]
    assert {o.type.tensor_type.elem_type for o in half.graph.output} == {onnx.TensorProto.FLOAT}
    values = {v.name: v.type.tensor_type.elem_type for v in [*half.graph.value_info, *half.graph.output]}
    for node in half.graph.node:
        if node.op_type in ("Softmax", "LayerNormalization"):
            assert all(values.get(o) == onnx.TensorProto.FLOAT for o in node.output), node.name
        if node.op_type == "MatMul":
            assert all(values.get(o) == onnx.TensorProto.FLOAT16 for o in node.output), node.name
    path = tmp_path / "attn.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(0).standard_normal((2, 7, 16)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    module = rt.load(compile_model(path, "cpu", tmp_path / "attn16.edgec", backend="ort", precision="fp16").path)
    got = module.run({"x": x})
    for (name, g), w in zip(got.items(), want):
        assert g.dtype == np.float32 and np.abs(g - w).max() < 2e-2, name


def test_tvm_fp16_on_the_cpu_computes_in_fp16_and_keeps_top1(lenet_onnx, split, tmp_path):
    """ToMixedPrecision on the CPU pipeline: fp16 kernels, fp32 I/O, within fp16 rounding of fp32."""
    fp16 = compile_model(lenet_onnx, "cpu", tmp_path / "lenet16.edgec", backend="tvm", precision="fp16")
    fp32 = compile_model(lenet_onnx, "cpu", tmp_path / "lenet32.edgec", backend="tvm")
    assert fp16.manifest["precision"] == "fp16" and fp16.manifest["outputs"][0]["dtype"] == "float32"
    x = split.x_test[:64]
    half, full = rt.load(fp16.path)(x)[0], rt.load(fp32.path)(x)[0]
    assert half.dtype == np.float32 and 1e-4 < np.abs(half - full).max() < 2e-2  # really fp16, and close
    assert (half.argmax(1) == full.argmax(1)).mean() >= 0.98


def _fragile_lenet_relu() -> onnx.ModelProto:
    """The trained lenet-relu with one fragile layer: its second conv reads an extra, always-zero input
    channel (a Pad) through weights 200x its largest, so float outputs are unchanged but each output
    channel's int8 weight scale is set by the zero channel and the real weights round to 0."""
    from onnx import helper

    from edgec.frontend.export import export_onnx, resolve_exportable

    net, shape, outputs = resolve_exportable("lenet-relu")
    with tempfile.TemporaryDirectory() as tmp:
        model = onnx.load(export_onnx(net, shape, Path(tmp) / "lenet-relu.onnx", output_names=outputs))
    conv = [n for n in model.graph.node if n.op_type == "Conv"][1]
    weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
    w = numpy_helper.to_array(weight)
    wide = np.concatenate([w, np.full((w.shape[0], 1, *w.shape[2:]), 200 * np.abs(w).max(), np.float32)], axis=1)
    weight.CopyFrom(numpy_helper.from_array(wide, conv.input[1]))
    model.graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 1, 0, 0], np.int64), "pads"))
    index = list(model.graph.node).index(conv)
    model.graph.node.insert(index, helper.make_node("Pad", [conv.input[0], "pads"], ["zero_channel"], name="pad"))
    conv.input[0] = "zero_channel"
    return model


@pytest.mark.parametrize("backend", ["ort", "tvm"])
def test_budget_keeps_exactly_the_fragile_layer_float(backend):
    """Sensitivity and accuracy are measured on the backend being compiled, on validation samples; the
    fragile conv (with the ReLU the quantizer fused into it: one unit) is the one layer kept float."""
    from edgec.compiler import host_runner

    model = _fragile_lenet_relu()
    feeds = calibration_inputs("digits", model, 32)
    x, y, _ = validation_split("digits", model, 32)
    scheme = Int8Scheme("uint8", reduce_range=True)
    result = quantize_within_budget(model, feeds, x, y, 1.0, scheme=scheme, run=host_runner(backend))
    assert result.steps[0]["accuracy"] < result.fp32_accuracy - 0.5  # all-int8 is broken by that layer
    assert result.kept_float == ["/3/Conv", "/4/Relu"]  # exactly it: not "everything float"
    assert max(result.sensitivity, key=result.sensitivity.get) == "/3/Conv+/4/Relu"
    assert 100 * (result.fp32_accuracy - result.int8_accuracy) <= 1.0


def test_budget_is_chosen_on_validation_samples_disjoint_from_calibration_and_test(lenet_onnx, split, tmp_path):
    result = compile_model(lenet_onnx, "cpu", tmp_path / "l8.edgec", backend="tvm", precision="int8",
                           int8=Int8Options(calib="digits", max_accuracy_drop=0.5))
    quant = result.manifest["quantization"]
    assert quant["validation"] == {
        "data": "digits", "samples": VALIDATION_SAMPLES, "measured_on": "tvm (this host's CPU)",
        "split": f"the last {VALIDATION_SAMPLES} of digits' training split (calibration uses its first 64; the "
                 "held-out split is not used)"}
    x, _, _ = validation_split("digits", onnx.load(lenet_onnx))
    rows = {r.tobytes() for r in x}
    assert not rows & {r.tobytes() for r in split.x_test} and not rows & {r.tobytes() for r in split.x_train[:64]}


def test_calibration_file_without_validation_data_is_split(lenet_onnx, split, tmp_path):
    data = tmp_path / "calib.npz"
    np.savez(data, x=split.x_train[:200], y=split.y_train[:200])
    result = compile_model(lenet_onnx, "cpu", tmp_path / "l8.edgec", backend="ort", precision="int8",
                           int8=Int8Options(calib=str(data), samples=100, max_accuracy_drop=1.0))
    validation = result.manifest["quantization"]["validation"]
    assert validation["samples"] == 50 and validation["measured_on"] == "ort (this host's CPU)"
    assert validation["split"].startswith("the last 50 of 200 samples of the --calib file (calibration uses its "
                                          "first 100)")
    with pytest.raises(EdgecError, match=r"^--calib-samples 160: .* has 200 samples and its last 50 validate "):
        compile_model(lenet_onnx, "cpu", tmp_path / "x.edgec", backend="ort", precision="int8",
                      int8=Int8Options(calib=str(data), samples=160, max_accuracy_drop=1.0))
