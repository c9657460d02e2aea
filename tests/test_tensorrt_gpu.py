"""TensorRT engines built for this machine's GPU, run, and compared with ONNX Runtime: fp32 within 1e-3, fp16 top-1
agreement 100% on the zoo's held-out images.

Skipped without an NVIDIA GPU, or without a TensorRT that builds for it: TensorRT-RTX (sm_75 ... sm_121, not Hopper
sm_90, Jetson sm_87 or sm_100) or full TensorRT (any GPU it supports, built on the GPU itself). Written to run
unchanged with either: `--target cuda` (this GPU) picks the flavour as compile does (full TensorRT where installed).
Never run on this project's machines so far (no GPU); run them first where there is one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.errors import UnsupportedError
from edgec.targets import compute_capability, local_cuda_archs, resolve_target

ARCHS = local_cuda_archs()
if not ARCHS:
    pytest.skip("needs an NVIDIA GPU (nvidia-smi lists none)", allow_module_level=True)
SM = ARCHS[0]

from edgec.backends.tensorrt.flavour import RTX_ARCHS, choose  # noqa: E402

try:
    FLAVOUR = choose(resolve_target("cuda")).name
except UnsupportedError as e:
    pytest.skip(f"no TensorRT builds for this GPU ({SM}): {e}", allow_module_level=True)

import edgec.runtime as rt  # noqa: E402
from edgec.compiler import compile_model  # noqa: E402
from edgec.frontend.export import export_onnx, resolve_exportable  # noqa: E402
from edgec.runtime.artifact import ArtifactError  # noqa: E402
from edgec.zoo import registry  # noqa: E402

RTX_ONLY = pytest.mark.skipif(FLAVOUR != "rtx", reason=f"TensorRT-RTX only; this GPU ({SM}) builds with full TensorRT")


def _save(tmp_path, nodes, inputs, outputs, initializers=()):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(initializers)),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path


def _ort(path, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _matmul_relu(tmp_path):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "W")
    return _save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])


def test_dynamic_batch_runs_every_batch_in_the_profile(tmp_path):
    path = _matmul_relu(tmp_path)
    db = str(tmp_path / "db") if FLAVOUR == "full" else None  # TensorRT-RTX has no timing cache
    result = compile_model(path, "cuda", tmp_path / "a.edgec", backend="tensorrt", tuning_db=db)
    config = result.manifest["backend_config"]
    assert config["tensorrt"]["flavour"] == FLAVOUR
    assert config["tensorrt"]["compute_capabilities"] == [compute_capability(SM)]
    assert config["profile"] == {"x": [[1, 8], [1, 8], [32, 8]]}
    if FLAVOUR == "full":
        assert config["timing_cache"] == "new" and (tmp_path / "db" / f"tensorrt-{SM}.timing.cache").is_file()
        again = compile_model(path, "cuda", tmp_path / "b.edgec", backend="tensorrt", tuning_db=db)
        assert again.manifest["backend_config"]["timing_cache"] == "loaded"
    module = rt.load(result.path, device="cuda")
    for batch in (1, 5, 32):
        x = np.random.default_rng(batch).standard_normal((batch, 8)).astype(np.float32)
        np.testing.assert_allclose(module(x)[0], _ort(path, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")

    def export(name: str) -> Path:
        net, shape, outputs = resolve_exportable(name)
        return export_onnx(net, shape, out / f"{name}.onnx", output_names=outputs)

    return export


@pytest.mark.parametrize("name", ["lenet", "resnet18", "mobilenetv2", "transformer", "lstm"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_zoo_outputs_match_onnx_runtime(zoo_onnx, tmp_path, name, precision):
    path = zoo_onnx(name)
    x = registry.get(name).load_data().x_test[:64]
    expected = np.concatenate([_ort(path, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    target = "rtx" if FLAVOUR == "rtx" and SM in resolve_target("rtx").gpu_archs else "cuda"
    module = rt.load(compile_model(path, target, tmp_path / "m.edgec", backend="tensorrt", precision=precision).path,
                     device="cuda")
    got = np.concatenate([module(x[i:i + 8])[0] for i in range(0, len(x), 8)])
    if precision == "fp32":
        assert np.abs(got - expected).max() <= 1e-3
    else:
        assert (got.argmax(-1) == expected.argmax(-1)).mean() == 1.0


def test_detector_matches_onnx_runtime(zoo_onnx, tmp_path):
    """TensorRT-RTX: NMS on the host; full TensorRT: EfficientNMS_TRT and its adapter."""
    path = zoo_onnx("detector")
    result = compile_model(path, "cuda", tmp_path / "det.edgec", backend="tensorrt")
    placed = [n["runs_on"] for n in result.manifest["nms"]["nodes"]]
    assert placed == (["host"] if FLAVOUR == "rtx" else ["tensorrt"])
    module = rt.load(result.path, device="cuda")
    x = registry.get("detector").load_data().x_test[:8]
    for i in range(len(x)):
        got = module.run({"input": x[i:i + 1]})
        for (name, value), want in zip(got.items(), _ort(path, {"input": x[i:i + 1]})):
            assert value.shape == want.shape, name
            np.testing.assert_allclose(value, want, atol=1e-3, err_msg=name)


@RTX_ONLY
def test_runtime_cache_is_kept_beside_the_artifact(tmp_path):
    path = _matmul_relu(tmp_path)
    artifact = compile_model(path, "cuda", tmp_path / "m.edgec", backend="tensorrt").path
    rt.load(artifact, device="cuda")(np.ones((3, 8), np.float32))
    cache = Path(f"{artifact}.{SM}.runtime-cache")
    assert cache.is_file() and cache.stat().st_size > 0
    again = rt.load(artifact, device="cuda")(np.ones((3, 8), np.float32))  # loads the cache (else JIT again)
    np.testing.assert_allclose(again[0], _ort(path, {"x": np.ones((3, 8), np.float32)})[0], rtol=1e-5, atol=1e-5)


@RTX_ONLY
def test_a_plan_for_other_gpus_is_refused_before_deserializing(tmp_path):
    other = next(sm for sm in RTX_ARCHS if sm not in (SM, "sm_75"))
    artifact = compile_model(_matmul_relu(tmp_path), f"cuda-{other}", tmp_path / "m.edgec", backend="tensorrt").path
    with pytest.raises(ArtifactError) as info:
        rt.load(artifact, device="cuda")
    assert str(info.value) == (f"{artifact}: the TensorRT-RTX plan holds code for compute capability "
                               f"{compute_capability(other)}, but cuda is {compute_capability(SM)}; recompile it for "
                               f"this GPU: `edgec compile --backend tensorrt --target cuda-{SM}`")


def test_weightless_plan_is_refitted_at_load(tmp_path):
    path = _matmul_relu(tmp_path)
    result = compile_model(path, "cuda", tmp_path / "m.edgec", backend="tensorrt", weightless=True)
    assert result.manifest["backend_config"]["weights"] == "stripped" and "weights.onnx" in result.manifest["files"]
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_allclose(rt.load(result.path, device="cuda")(x)[0], _ort(path, {"x": x})[0], rtol=1e-5,
                               atol=1e-5)


@pytest.mark.skipif(FLAVOUR != "full", reason="EfficientNMS_TRT is a full-TensorRT plugin (TensorRT-RTX ships none)")
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
    np.testing.assert_array_equal(got, _ort(path, {"boxes": boxes, "scores": scores})[0])
