"""`--backend auto`: every candidate compiled, verified against ORT fp32, timed; the fastest kept."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import edgec.runtime as rt
from edgec.autoselect import compile_auto, verify
from edgec.errors import UnsupportedError
from edgec.quantize.pipeline import Int8Options
from tests.conftest import run_edgec


def test_auto_keeps_the_fastest_verified_backend(lenet_onnx, tmp_path):
    result = compile_auto(lenet_onnx, "cpu", tmp_path / "auto.edgec")
    selection = result.manifest["backend_selection"]
    candidates = selection["candidates"]
    assert set(candidates) == {"tvm", "ort"}
    assert all(c["verdict"] == "verified" and c["p50_ms"] > 0 for c in candidates.values())
    assert selection["chosen"] == min(candidates, key=lambda n: candidates[n]["p50_ms"])
    assert result.manifest["backend"] == selection["chosen"]
    module = rt.load(result.path)
    x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
    want = ort.InferenceSession(str(lenet_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(module(x)[0] - want).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["auto.edgec"]  # candidates lived in a temporary directory
    assert selection["verified_on"] == "the first 8 held-out samples of digits"


def test_auto_int8_checks_on_calibration_data(lenet_onnx, tmp_path):
    result = compile_auto(lenet_onnx, "cpu", tmp_path / "auto8.edgec", precision="int8",
                          int8=Int8Options(calib="digits"))
    candidates = result.manifest["backend_selection"]["candidates"]
    assert candidates[result.manifest["backend"]]["verdict"] == "verified"
    assert result.manifest["quantization"]["calibration"]["data"] == "digits"


def test_auto_refuses_a_target_that_is_not_this_machine(lenet_onnx, tmp_path):
    with pytest.raises(UnsupportedError, match=r"^--backend auto measures the candidates on this machine, and "
                                               r"target 'aarch64' is not this machine; choose --backend "
                                               r"tvm\|ort\|tensorrt$"):
        compile_auto(lenet_onnx, "aarch64", tmp_path / "a.edgec")
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_each_candidate(lenet_onnx, tmp_path):
    out = run_edgec("compile", str(lenet_onnx), "--target", "cpu", "--backend", "auto", "-o", str(tmp_path / "a.edgec"),
                    check=True).stdout
    assert "  tvm: verified, p50 " in out and "  ort: verified, p50 " in out
    info = run_edgec("inspect", str(tmp_path / "a.edgec"), check=True).stdout
    assert "backend chosen by measurement: " in info


def _outputs(*arrays):
    return [{"y": a} for a in arrays]


def test_verify_tolerances():
    ref = [[np.array([1.0, -2.0, 3.0], np.float32)]]
    assert verify(_outputs(np.array([1.0, -2.0, 3.002], np.float32)), ref, "fp32") is None
    assert verify(_outputs(np.array([1.0, -2.0, 3.01], np.float32)), ref, "fp32") == \
        "output 'y': max relative error 3.33e-03 > 0.001"
    assert verify(_outputs(np.array([1.1, -2.1, 2.9], np.float32)), ref, "int8") is None  # cosine 0.998
    assert verify(_outputs(np.array([3.0, -2.0, 1.0], np.float32)), ref, "int8") == \
        "output 'y': cosine similarity 0.7143 < 0.99"
    assert verify(_outputs(np.zeros(2, np.float32)), ref, "fp32") == "output 'y' has shape [2], reference [3]"
    assert verify(_outputs(np.array([1, 2], np.int64)), [[np.array([1, 3], np.int64)]], "fp32") == \
        "output 'y' differs from the reference"
    assert verify(_outputs(np.array([np.nan, -2.0, 3.0], np.float32)), ref, "fp32") is not None


def test_auto_verifies_on_real_held_out_samples_and_records_them(lenet_onnx):
    """Not one random input: digits' first 8 held-out images (what a report scores first)."""
    import onnx

    from edgec.autoselect import verification_inputs
    from edgec.zoo import data

    feeds, what = verification_inputs(onnx.load(lenet_onnx), str(lenet_onnx))
    assert what == "the first 8 held-out samples of digits"
    assert np.array_equal(np.concatenate([f["input"] for f in feeds]), data.digits(28, 1).x_test[:8])
    feeds, what = verification_inputs(onnx.load(lenet_onnx), str(lenet_onnx), Int8Options(calib="digits"))
    assert what == "the first 8 calibration samples (digits)" and len(feeds) == 8


def test_auto_records_random_inputs_only_where_no_data_fits(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgec.autoselect import verification_inputs

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "mlp",  # [N, 16]: no image data fits
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "mlp.onnx")
    feeds, what = verification_inputs(model, str(tmp_path / "mlp.onnx"))
    assert what.startswith("8 seeded random inputs: no real data fits the model's input") and len(feeds) == 8
    np.savez(tmp_path / "v.npz", x=np.ones((3, 16), np.float32))
    feeds, what = verification_inputs(model, str(tmp_path / "mlp.onnx"), verify_data=str(tmp_path / "v.npz"))
    assert what == "the first 8 samples of v.npz" and len(feeds) == 3


def test_auto_falls_back_to_ort_when_tvm_cannot_import_and_says_so(tmp_path):
    import onnx

    from tests.test_reliability_errors import tiny_model

    onnx.save(tiny_model(act="LpNormalization"), tmp_path / "lpnorm.onnx")  # no TVM converter, no ONNX function body
    out = run_edgec("compile", str(tmp_path / "lpnorm.onnx"), "--target", "cpu", "--backend", "auto", "-o",
                    str(tmp_path / "lpnorm.edgec"), check=True).stdout
    assert "  tvm: failed, " in out
    assert "(op LpNormalization), ai.onnx opset 17, is not supported by the tvm backend" in out
    assert "  ort: verified, p50 " in out and "wrote " in out and "(ort, target cpu" in out
    selection = rt.load(tmp_path / "lpnorm.edgec").manifest["backend_selection"]
    assert selection["chosen"] == "ort" and selection["candidates"]["tvm"]["verdict"] == "failed"
