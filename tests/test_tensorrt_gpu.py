"""The TensorRT backend for real: build, load and run on the local GPU. Skipped where TensorRT or a GPU
is missing (every machine of this project so far): these run first on a machine that has both.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.targets import compute_capability, local_cuda_archs

trt = pytest.importorskip("tensorrt", reason="needs NVIDIA TensorRT: pip install tensorrt --extra-index-url "
                                             "https://pypi.nvidia.com on a machine with an NVIDIA GPU and driver")
if not local_cuda_archs():
    pytest.skip("needs an NVIDIA GPU (nvidia-smi lists none)", allow_module_level=True)

import edgec.runtime as rt  # noqa: E402
from edgec.compiler import compile_model  # noqa: E402


def _save(tmp_path, nodes, inputs, outputs, initializers=()):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(initializers)),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path


def test_dynamic_batch_build_run_and_timing_cache(tmp_path):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "W")
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
    db = tmp_path / "db"
    first = compile_model(path, "cuda", tmp_path / "a.edgec", backend="tensorrt", tuning_db=str(db))
    config = first.manifest["backend_config"]
    assert config["tensorrt_version"] == trt.__version__ and config["timing_cache"] == "new"
    assert config["compute_capability"] == compute_capability(local_cuda_archs()[0])
    assert config["profile"] == {"x": [[1, 8], [1, 8], [32, 8]]}
    assert (db / f"tensorrt-{local_cuda_archs()[0]}.timing.cache").is_file()
    second = compile_model(path, "cuda", tmp_path / "b.edgec", backend="tensorrt", tuning_db=str(db))
    assert second.manifest["backend_config"]["timing_cache"] == "loaded"
    module = rt.load(first.path, device="cuda")
    for batch in (1, 5, 32):
        x = np.random.default_rng(batch).standard_normal((batch, 8)).astype(np.float32)
        np.testing.assert_allclose(module(x)[0], np.maximum(x @ numpy_helper.to_array(w), 0), rtol=1e-5, atol=1e-5)


def test_nms_through_efficient_nms_matches_onnx_runtime(tmp_path):
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 50, (2, 64, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 30, (2, 64, 2))], axis=-1).astype(np.float32)
    scores = rng.uniform(0, 1, (2, 3, 64)).astype(np.float32)
    consts = [numpy_helper.from_array(np.array([5], np.int64), "m"),
              numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
              numpy_helper.from_array(np.array([0.3], np.float32), "score")]
    path = _save(tmp_path, [helper.make_node("NonMaxSuppression", ["boxes", "scores", "m", "iou", "score"], ["sel"])],
                 [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [2, 64, 4]),
                  helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 3, 64])],
                 [helper.make_tensor_value_info("sel", TensorProto.INT64, ["M", 3])], consts)
    result = compile_model(path, "cuda", tmp_path / "nms.edgec", backend="tensorrt")
    assert result.manifest["backend_config"]["nms"][0]["mapping"] == "EfficientNMS_TRT"
    got = rt.load(result.path, device="cuda").run({"boxes": boxes, "scores": scores})["sel"]
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"boxes": boxes, "scores": scores})[0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_lenet_top1_agrees_with_onnx_runtime(lenet_onnx, tmp_path, precision):
    result = compile_model(lenet_onnx, "cuda", tmp_path / f"lenet-{precision}.edgec", backend="tensorrt",
                           precision=precision)
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    got = rt.load(result.path, device="cuda")(x)[0]
    expected = ort.InferenceSession(str(lenet_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.argmax() == expected.argmax()
    np.testing.assert_allclose(got, expected, atol=1e-3 if precision == "fp32" else 5e-2)
