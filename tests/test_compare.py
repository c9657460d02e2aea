"""`edgec compare`: the first divergent tensor is found for altered weights and a bad int8 scale."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.compare import compare
from tests.conftest import run_edgec


def _altered_copy(src, dst, initializer: str, factor: float) -> None:
    model = onnx.load(src)
    for i, t in enumerate(model.graph.initializer):
        if t.name == initializer:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * factor, t.name))
            break
    else:
        raise AssertionError(f"no initializer {initializer}")
    onnx.save(model, dst)


@pytest.fixture(scope="module")
def qdq_models(lenet_onnx, tmp_path_factory):
    """LeNet statically quantized by ONNX Runtime (QDQ, per-channel int8), and a copy whose Sigmoid-1
    output quantizer got a scale 8x too large."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgec.zoo import data

    split = data.digits(28, 1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": split.x_train[i:i + 1]} for i in range(32)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path_factory.mktemp("qdq")
    good, bad = out / "lenet_qdq.onnx", out / "lenet_qdq_bad.onnx"
    quantize_static(str(lenet_onnx), str(good), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    model = onnx.load(good)
    quant = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "/1/Sigmoid_output_0")
    scale = next(t for t in model.graph.initializer if t.name == quant.input[1])
    model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(scale) * 8, "bad_scale"))
    quant.input[1] = "bad_scale"
    onnx.save(model, bad)
    return good, bad


@pytest.mark.parametrize("backends", [("ort", "ort"), ("tvm", "ort")])
def test_altered_conv_weight_is_first_divergent(lenet_onnx, tmp_path, backends):
    copy = tmp_path / "copy.onnx"
    _altered_copy(lenet_onnx, copy, "3.weight", 1.01)
    result = compare(str(copy), backends, reference_path=str(lenet_onnx), dataset="digits", samples=4)
    first = result.first_divergent
    assert (first.tensor, first.op) == ("/3/Conv_output_0", "Conv")
    before = [t for t in result.tensors if t.index < first.index]
    assert before and all(not t.exceeds and t.max_abs_err < 1e-4 for t in before)


def conv_bn_model() -> onnx.ModelProto:
    """Conv-BN-Relu-Conv-BN: edgec fuses each BN into its Conv on the side under test."""
    rng = np.random.default_rng(3)

    def init(name, *shape, positive=False):
        v = rng.random(shape) + 0.5 if positive else rng.standard_normal(shape) * 0.3
        return numpy_helper.from_array(v.astype(np.float32), name)

    nodes, inits = [], []
    for i, (cin, cout) in enumerate([(3, 8), (8, 8)]):
        x = "x" if i == 0 else "r1"
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("BatchNormalization", [f"c{i}", f"g{i}", f"b{i}", f"m{i}", f"v{i}"], [f"bn{i}"],
                                   name=f"bn{i}")]
        inits += [init(f"w{i}", cout, cin, 3, 3), init(f"g{i}", cout, positive=True), init(f"b{i}", cout),
                  init(f"m{i}", cout), init(f"v{i}", cout, positive=True)]
    nodes.insert(2, helper.make_node("Relu", ["bn0"], ["r1"], name="relu"))
    graph = helper.make_graph(nodes, "conv_bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("bn1", TensorProto.FLOAT, [1, 8, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_divergence_inside_fused_bn_is_named_by_the_fused_tensor(tmp_path):
    orig, copy = tmp_path / "orig.onnx", tmp_path / "copy.onnx"
    onnx.save(conv_bn_model(), orig)
    _altered_copy(orig, copy, "w1", 1.05)
    result = compare(str(copy), ("tvm", "ort"), reference_path=str(orig), dataset="random", samples=2)
    # conv outputs c0/c1 no longer exist on the fused side: the BN outputs they were fused into stand for them
    assert result.unmatched == {"test_only": [], "reference_only": ["c0", "c1"]}
    assert [(t.tensor, t.exceeds) for t in result.tensors] == [("bn0", False), ("r1", False), ("bn1", True)]
    assert result.first_divergent.node == "bn1"


@pytest.mark.parametrize("backend", ["tvm", "ort"])
def test_qdq_model_agrees_with_itself_across_backends(qdq_models, backend):
    good, _ = qdq_models
    result = compare(str(good), (backend, "ort"), dataset="digits", samples=8)
    assert result.tolerance["min_cosine"] == 0.999
    assert result.first_divergent is None, result.first_divergent
    assert min(t.cosine for t in result.tensors) > 0.9999


@pytest.mark.parametrize("backend", ["tvm", "ort"])
def test_bad_activation_scale_is_first_divergent(qdq_models, backend):
    good, bad = qdq_models
    result = compare(str(bad), (backend, "ort"), reference_path=str(good), dataset="digits", samples=8)
    first = result.first_divergent
    assert (first.tensor, first.op) == ("/1/Sigmoid_output_0_QuantizeLinear_Output", "QuantizeLinear")
    assert first.cosine < 0.5


def test_cli_json_and_output_dir(qdq_models, tmp_path):
    good, bad = qdq_models
    proc = run_edgec("compare", bad, "--reference", good, "--backends", "ort,ort", "--dataset", "digits",
                     "--samples", "4", "--json", "-o", tmp_path / "cmp")
    assert proc.returncode == 1  # diverged: the check failed, as in Polygraphy; the JSON is still printed
    result = json.loads(proc.stdout)
    assert set(result) >= {"first_divergent", "tensors", "inputs", "tolerance"}
    assert set(result["first_divergent"]) == {"tensor", "node", "op", "max_abs_err", "cosine"}
    assert result["first_divergent"]["node"] == "/1/Sigmoid_output_0_QuantizeLinear"
    assert result["inputs"] == {"dataset": "digits", "samples": 4, "input": "input", "shape": [1, 28, 28],
                                "dtype": "float32"}
    for name in ("compare.json", "compare.html", "error_by_layer.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0


def test_cli_rejects_three_backends(lenet_onnx):
    proc = run_edgec("compare", lenet_onnx, "--backends", "tvm,ort,ort")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("edgec: error: --backends takes two backends, TEST,REFERENCE (e.g. tvm,ort); "
                                   "got tvm,ort,ort")


@pytest.mark.parametrize("backend", ["tvm", "ort"])
@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_compare_runs_on_both_backends(lenet_onnx, backend, precision, capsys):
    """`compare --precision int8 --calib digits` quantizes as compile does; fp16 compiles with the backend's
    fp16 conversion (TVM: on the CPU too). Both are judged by cosine similarity and agree here."""
    from edgec.cli import main

    extra = ["--calib", "digits", "--calib-samples", "16"] if precision == "int8" else []
    code = main(["compare", str(lenet_onnx), "--backends", f"{backend},ort", "--precision", precision,
                 "--dataset", "digits", "--samples", "4", "--json", *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["test"]["precision"] == precision and report["first_divergent"] is None
    assert report["tolerance"]["mode"] == ("cosine (quantized graph)" if precision == "int8" else "cosine (fp16)")
    errors = [t["max_abs_err"] for t in report["tensors"]]
    assert len(errors) == 12 and max(errors) > 1e-4  # really reduced precision, not the fp32 graph
    if precision == "int8":
        assert report["test"]["quantization"]["calibration"] == {"data": "digits", "method": "minmax", "samples": 16}


def test_int8_compare_needs_calibration_data(lenet_onnx, capsys):
    from edgec.cli import main

    assert main(["compare", str(lenet_onnx), "--precision", "int8"]) == 2
    assert capsys.readouterr().err.strip() == ("edgec: error: --precision int8 needs calibration data: add --calib "
                                               "digits or --calib DATA.npz")
