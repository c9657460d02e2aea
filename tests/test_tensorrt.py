"""The TensorRT backend without building: CUDA targets, option and profile mapping, precision plan, the
NMS -> EfficientNMS_TRT mapping (full TensorRT), and its adapter checked against ONNX Runtime's NMS.

Nothing here builds an engine or pretends one was built: tests/test_tensorrt_rtx.py builds real TensorRT-RTX
plans (no GPU needed), tests/test_tensorrt_gpu.py builds and runs engines where a GPU exists.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.backends import CompileOptions, get_backend
from edgec.backends.tensorrt import nms
from edgec.backends.tensorrt.backend import timing_cache_path
from edgec.backends.tensorrt.options import TensorRTOptions, derive_profile, has_qdq, precision_model
from edgec.errors import EdgecError, UnsupportedError
from edgec.runtime.artifact import ArtifactError, write_artifact
from edgec.targets import compute_capability, cuda_arch, cuda_target_name, local_cuda_archs, resolve_target
from tests.conftest import run_edgec

NO_TENSORRT = importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_rtx_bindings") is None
NO_GPU = not local_cuda_archs()


def _model(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def _relu_model(shape) -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])


def _relu(path, shape=("batch", 4)):
    onnx.save(_relu_model(shape), path)
    return path


# --- the refusal where TensorRT is not installed -------------------------------------------------

@pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT or TensorRT-RTX is installed here; this checks the refusal "
                                               "without either (test_tensorrt_rtx.py does, with imports blocked)")
def test_compile_without_tensorrt_exits_2_with_one_line_and_no_file(tmp_path):
    model = _relu(tmp_path / "relu.onnx")
    out = tmp_path / "relu.edgec"
    proc = run_edgec("compile", model, "--target", "rtx", "--backend", "tensorrt", "-o", out)
    assert proc.returncode == 2
    assert proc.stderr == ("edgec: error: TensorRT-RTX is not importable here (No module named "
                           "'tensorrt_rtx_bindings'); install it: pip install tensorrt-rtx-cu13-libs "
                           "tensorrt-rtx-cu13-bindings (x86-64 Linux; "
                           "`make setup` installs the versions requirements.lock pins)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relu.onnx"]


def test_tuning_db_still_refused_for_other_backends(tmp_path):
    proc = run_edgec("compile", _relu(tmp_path / "relu.onnx"), "--target", "cpu", "--backend", "ort",
                     "--tuning-db", tmp_path / "db", "-o", tmp_path / "out.edgec")
    assert proc.returncode == 2
    assert proc.stderr.startswith("edgec: error: --tuning-db: backend 'ort' has no tuning database")


def test_tensorrt_backend_refuses_cpu_targets():
    with pytest.raises(UnsupportedError, match=r"^backend 'tensorrt' cannot compile for target 'x86-64-avx2' "
                                               r"\(device cpu\); it targets cuda$"):
        get_backend("tensorrt").check(resolve_target("x86-64-avx2"), CompileOptions())


# --- CUDA targets ---------------------------------------------------------------------------------

def test_cuda_sm_target_records_device_arch_and_tvm_fields():
    t = resolve_target("cuda-sm_90").to_json()
    assert (t["name"], t["device"], t["arch"], t["cpu_features"]) == ("cuda-sm_90", "cuda", "x86_64", [])
    assert t["tvm"] == {"kind": "cuda", "arch": "sm_90", "max_threads_per_block": 1024, "max_num_threads": 1024,
                        "max_shared_memory_per_block": 49152, "thread_warp_size": 32,
                        "host": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}}


def test_rtx_target_is_one_engine_for_four_gpu_architectures():
    t = resolve_target("rtx")
    assert t.to_json() == {"name": "rtx", "device": "cuda", "arch": "x86_64", "tvm": {}, "cpu_features": [],
                           "gpu_archs": ["sm_80", "sm_86", "sm_89", "sm_120"]}
    assert resolve_target("cuda-sm_90").to_json()["gpu_archs"] == ["sm_90"]
    with pytest.raises(EdgecError, match=r"^target 'rtx' is not one GPU architecture \(it covers sm_80, sm_86, sm_89, "
                                         r"sm_120\)$"):
        cuda_arch(t)
    with pytest.raises(UnsupportedError, match=r"^backend 'tvm' cannot compile for target 'rtx' \(one TensorRT-RTX "
                                               r"engine .*\): TVM builds for one GPU architecture; use --backend "
                                               r"tensorrt, or --target cuda-sm_XX for tvm$"):
        get_backend("tvm").check(t, CompileOptions())


def test_jetson_orin_is_sm_87_with_an_aarch64_host():
    t = resolve_target("jetson-orin")
    assert (t.device, t.arch, t.tvm["arch"]) == ("cuda", "aarch64", "sm_87")
    assert t.tvm["host"]["mtriple"] == "aarch64-linux-gnu" and t.tvm["host"]["mcpu"] == "cortex-a78ae"


def test_tvm_accepts_the_cuda_target_dicts():
    tvm = pytest.importorskip("tvm")
    for name in ("cuda-sm_90", "jetson-orin"):
        target = tvm.target.Target(resolve_target(name).tvm)
        assert target.kind.name == "cuda" and target.host is not None


def test_unknown_sm_arch_lists_the_known_ones():
    with pytest.raises(EdgecError, match=r"^unknown CUDA architecture 'sm_91' in target 'cuda-sm_91'; known: sm_50,"):
        resolve_target("cuda-sm_91")


@pytest.mark.skipif(not NO_GPU, reason="this host has an NVIDIA GPU, so 'cuda' resolves to it")
def test_cuda_without_a_gpu_asks_for_arch():
    with pytest.raises(EdgecError, match=r"no NVIDIA GPU was found .*--arch sm_90, or --target cuda-sm_90$"):
        resolve_target("cuda")


def test_arch_option_mapping():
    assert cuda_target_name("cuda", "sm_87") == "cuda-sm_87"
    assert cuda_target_name("cuda-sm_90", "sm_90") == "cuda-sm_90"
    assert cuda_target_name("jetson-orin", "sm_87") == "jetson-orin"
    assert cuda_target_name("cpu", None) == "cpu"
    for target, arch in (("cpu", "sm_90"), ("jetson-orin", "sm_90"), ("cuda-sm_80", "sm_90")):
        with pytest.raises(EdgecError, match=rf"^--arch {arch} does not apply to target '{target}'"):
            cuda_target_name(target, arch)
    assert [compute_capability(s) for s in ("sm_87", "sm_90a", "sm_120")] == ["8.7", "9.0", "12.0"]


# --- options, profiles, precision -----------------------------------------------------------------

def test_options_validate_and_serialize():
    assert TensorRTOptions().to_json() == {"workspace_mb": 1024, "max_batch": 32, "optimization_level": 3,
                                           "nms": "efficient", "hardware_compatible": False, "profiles": {}}
    for bad, message in (({"nms": "fast"}, "nms mode 'fast' is unknown"),
                         ({"optimization_level": 6}, "optimization_level 6 is out of range 0-5"),
                         ({"profiles": {"batch": (4, 2, 8)}}, "profile for 'batch' must be")):
        with pytest.raises(UnsupportedError, match=message):
            TensorRTOptions(**bad)


def test_profile_derivation():
    specs = [{"name": "image", "shape": ["batch", 3, 224, 224], "dtype": "float32"},
             {"name": "mask", "shape": ["batch", 224, 224], "dtype": "bool"},
             {"name": "scale", "shape": [1], "dtype": "float32"}]
    assert derive_profile(specs, TensorRTOptions(max_batch=8), "m.onnx") == {
        "image": ((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224)),
        "mask": ((1, 224, 224), (1, 224, 224), (8, 224, 224))}
    assert derive_profile(specs, TensorRTOptions(profiles={"batch": (2, 4, 16)}), "m.onnx")["image"] == (
        (2, 3, 224, 224), (4, 3, 224, 224), (16, 3, 224, 224))
    assert derive_profile([specs[2]], TensorRTOptions(), "m.onnx") == {}
    unknown = [{"name": "x", "shape": ["?", "?"], "dtype": "float32"}]
    assert derive_profile(unknown, TensorRTOptions(profiles={"x[1]": (8, 16, 32)}), "m.onnx") == {
        "x": ((1, 8), (1, 16), (32, 32))}
    with pytest.raises(UnsupportedError, match=r"^m.onnx: input 'x' dim 1 is symbolic \('\?'\) and TensorRT needs its "
                                               r"range; fix it with --input-shape x=... or set a TensorRT profile "
                                               r"for 'x\[1\]'$"):
        derive_profile(unknown, TensorRTOptions(), "m.onnx")


def test_int8_needs_a_symmetric_qdq_model():
    model = _relu_model(("batch", 4))
    with pytest.raises(UnsupportedError, match=r"^m.onnx: --precision int8 with TensorRT needs a QDQ model"):
        precision_model(model, "int8", "m.onnx")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    qdq = _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], [x],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                 [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")])
    assert has_qdq(qdq) and precision_model(qdq, "int8", "m.onnx") is qdq
    asymmetric = onnx.ModelProto()
    asymmetric.CopyFrom(qdq)
    asymmetric.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array(3, np.int8), "z"))
    with pytest.raises(UnsupportedError, match=r"^m.onnx: node '#0' \(op QuantizeLinear\) has zero point 'z' that is "
                                               r"not a constant int8 0; TensorRT runs symmetric int8 only"):
        precision_model(asymmetric, "int8", "m.onnx")


def test_fp16_plan_converts_compute_keeps_io_fp32_and_stays_sorted():
    w = numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4), "W")
    model = _model([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Softmax", ["h"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
    half = precision_model(model, "fp16", "m.onnx")
    assert half is not model and model.graph.initializer[0].data_type == TensorProto.FLOAT
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    softmax = next(n for n in half.graph.node if n.op_type == "Softmax")
    produced = {o for n in half.graph.node[:list(half.graph.node).index(softmax)] for o in n.output}
    assert set(softmax.input) <= produced  # topologically sorted: TensorRT's parser reads nodes in order
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
           for m in (model, half)]
    np.testing.assert_allclose(run[1], run[0], atol=2e-3)
    assert precision_model(half, "fp16", "m.onnx") is half  # already fp16: left alone
    assert precision_model(model, "fp32", "m.onnx") is model


def test_timing_cache_lives_beside_the_tuning_databases(tmp_path):
    assert timing_cache_path(str(tmp_path), resolve_target("cuda-sm_90")) == tmp_path / "tensorrt-sm_90.timing.cache"
    assert timing_cache_path(None, resolve_target("jetson-orin")) is None


# --- NMS -> EfficientNMS_TRT -----------------------------------------------------------------------

def _nms_model(boxes_shape, scores_shape, per_class=10, iou=0.5, score=0.3, center=0, opset=17, constant=True):
    inputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, boxes_shape),
              helper.make_tensor_value_info("scores", TensorProto.FLOAT, scores_shape)]
    inits = [numpy_helper.from_array(np.array([per_class], np.int64), "max_per_class"),
             numpy_helper.from_array(np.array([iou], np.float32), "iou")]
    names = ["boxes", "scores", "max_per_class", "iou"]
    if score is not None:
        names.append("score")
        if constant:
            inits.append(numpy_helper.from_array(np.array([score], np.float32), "score"))
        else:
            inputs.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, [1]))
    node = helper.make_node("NonMaxSuppression", names, ["selected"], name="nms", center_point_box=center)
    return _model([node], inputs, [helper.make_tensor_value_info("selected", TensorProto.INT64, ["M", 3])], inits,
                  opset)


def test_nms_attribute_mapping():
    mapping = nms.map_attributes(m := _nms_model([2, 100, 4], [2, 3, 100], 10, 0.45, 0.25, center=1),
                                 m.graph.node[0])
    assert mapping.to_json() == {
        "node": "nms", "mapping": "EfficientNMS_TRT", "max_output_boxes_per_class": 10, "num_classes": 3,
        "attributes": {"score_threshold": pytest.approx(0.25), "iou_threshold": pytest.approx(0.45),
                       "max_output_boxes": 300, "box_coding": 1, "background_class": -1, "score_activation": 0,
                       "class_agnostic": 0}}
    big = _nms_model(["batch", 8400, 4], ["batch", 80, 8400], per_class=2**62, score=None)
    mapping = nms.map_attributes(big, big.graph.node[0])
    assert mapping.attributes.max_output_boxes == nms.MAX_DETECTIONS == 3840
    assert mapping.max_output_boxes_per_class == 3840
    assert mapping.attributes.score_threshold == nms.NO_THRESHOLD and mapping.attributes.box_coding == 0


@pytest.mark.parametrize("model, reason", [
    (_nms_model([1, 10, 4], [1, 2, 10], constant=False), "input 4 ('score') is not a constant"),
    (_nms_model([1, 10, 4], [1, 2, 10], per_class=0), "max_output_boxes_per_class is 0"),
    (_nms_model([1, 10, 4], [1, 2, 10], opset=11), "opset 11 < 13"),
    (_nms_model([1, 10, 4], [1, "classes", 10]), "static class count C"),
])
def test_nms_that_cannot_map_is_left_to_the_native_layer(model, reason):
    rewritten, records = nms.rewrite(model)
    assert records == [{"node": "nms", "mapping": "INMSLayer (native)", "reason": records[0]["reason"]}]
    assert reason in records[0]["reason"]
    assert [n.op_type for n in rewritten.graph.node] == ["NonMaxSuppression"]


def test_nms_rewrite_keeps_the_output_name_and_sets_plugin_fields():
    model = _nms_model([1, 50, 4], [1, 4, 50], 5, 0.5, 0.2)
    rewritten, records = nms.rewrite(model)
    assert records[0]["mapping"] == "EfficientNMS_TRT" and model.graph.node[0].op_type == "NonMaxSuppression"
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops[:2] == ["Transpose", "EfficientNMS_TRT"] and "NonMaxSuppression" not in ops
    plugin = rewritten.graph.node[1]
    assert plugin.domain == "TRT" and len(plugin.output) == 4
    assert {a.name: helper.get_attribute_value(a) for a in plugin.attribute} == {
        "plugin_version": b"1", "score_threshold": pytest.approx(0.2), "iou_threshold": 0.5, "max_output_boxes": 200,
        "box_coding": 0, "background_class": -1, "score_activation": 0, "class_agnostic": 0}
    assert rewritten.graph.node[-1].output == ["selected"] and rewritten.graph.output[0].name == "selected"
    assert ("TRT", 1) in [(o.domain, o.version) for o in rewritten.opset_import]


def _ort_nms(boxes, scores, per_class, iou, score, center):
    model = _nms_model(list(boxes.shape), list(scores.shape), per_class, iou, score, center)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"boxes": boxes, "scores": scores})[0], model


def _plugin_layout(boxes, scores, survivors, k, center):
    """EfficientNMS_TRT's documented outputs for these survivors: score-sorted, corner boxes, padded."""
    b_count = boxes.shape[0]
    num = np.zeros((b_count, 1), np.int32)
    det_boxes = np.zeros((b_count, k, 4), np.float32)
    det_scores = np.zeros((b_count, k), np.float32)
    det_classes = np.full((b_count, k), -1, np.int32)
    for b in range(b_count):
        rows = survivors[survivors[:, 0] == b]
        rows = rows[np.argsort(-scores[b, rows[:, 1], rows[:, 2]], kind="stable")][:k]
        box = boxes[b, rows[:, 2]]
        if center:
            box = np.concatenate([box[:, :2] - box[:, 2:] / 2, box[:, :2] + box[:, 2:] / 2], axis=1)
        num[b, 0], n = len(rows), len(rows)
        det_boxes[b, :n], det_scores[b, :n], det_classes[b, :n] = box, scores[b, rows[:, 1], rows[:, 2]], rows[:, 1]
    return [num, det_boxes, det_scores, det_classes]


def _boxes(rng, b, n):
    corner = rng.uniform(0, 50, (b, n, 2))
    return np.concatenate([corner, corner + rng.uniform(5, 30, (b, n, 2))], axis=-1).astype(np.float32)


_RNG = np.random.default_rng(0)
_CASES = {
    "batch2": (_boxes(_RNG, 2, 60), _RNG.uniform(0, 1, (2, 3, 60)).astype(np.float32), 5, 0.5, 0.3, 0),
    "per_class_cap_binds": (_boxes(_RNG, 1, 80), _RNG.uniform(0, 1, (1, 2, 80)).astype(np.float32), 2, 0.3, 0.1, 0),
    "none_above_threshold": (_boxes(_RNG, 2, 30), _RNG.uniform(0, 1, (2, 2, 30)).astype(np.float32), 5, 0.5, 1.0, 0),
    "all_boxes_identical": (np.tile(np.array([[[1, 2, 11, 12]]], np.float32), (2, 20, 1)),
                            np.full((2, 2, 20), 0.7, np.float32), 5, 0.5, 0.1, 0),
    "center_point_box": (np.concatenate([_RNG.uniform(20, 40, (1, 50, 2)), _RNG.uniform(5, 15, (1, 50, 2))],
                                        axis=-1).astype(np.float32),
                         _RNG.uniform(0, 1, (1, 4, 50)).astype(np.float32), 4, 0.4, 0.2, 1),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_nms_adapter_reproduces_onnx_selected_indices(case):
    """The adapter, run by ONNX Runtime on the plugin's documented output layout, gives ORT's own NMS rows."""
    boxes, scores, per_class, iou, score, center = _CASES[case]
    expected, model = _ort_nms(boxes, scores, per_class, iou, score, center)
    mapping = nms.map_attributes(model, model.graph.node[0])
    k = mapping.attributes.max_output_boxes
    survivors, _ = _ort_nms(boxes, scores, boxes.shape[1], iou, score, center)  # the plugin has no per-class cap
    names = ["num_detections", "detection_boxes", "detection_scores", "detection_classes"]
    nodes, inits = nms.adapter("a", "boxes", "scores", names, mapping, "selected")
    b_count = boxes.shape[0]
    graph_inputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, boxes.shape),
                    helper.make_tensor_value_info("scores", TensorProto.FLOAT, scores.shape),
                    helper.make_tensor_value_info(names[0], TensorProto.INT32, [b_count, 1]),
                    helper.make_tensor_value_info(names[1], TensorProto.FLOAT, [b_count, k, 4]),
                    helper.make_tensor_value_info(names[2], TensorProto.FLOAT, [b_count, k]),
                    helper.make_tensor_value_info(names[3], TensorProto.INT32, [b_count, k])]
    adapter = helper.make_model(helper.make_graph(nodes, "adapter", graph_inputs, [
        helper.make_tensor_value_info("selected", TensorProto.INT64, ["M", 3])], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(adapter, full_check=True)
    layout = _plugin_layout(boxes, scores, survivors, k, center)
    feeds = dict(zip(["boxes", "scores", *names], [boxes, scores, *layout]))
    got = ort.InferenceSession(adapter.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert got.dtype == np.int64 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


# --- runtime ---------------------------------------------------------------------------------------

def _fake_trt_artifact(path):
    """A well-formed TensorRT artifact whose plan is never reached: the host check comes first."""
    manifest = {"backend": "tensorrt", "target": resolve_target("cuda-sm_90").to_json(), "precision": "fp32",
                "backend_config": {"tensorrt": {"flavour": "full", "version": "10.13.0.35",
                                                "compute_capabilities": ["9.0"]}},
                "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
                "outputs": [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]}
    write_artifact(path, manifest, {"model.plan": b"\x00" * 64})
    return path


GPU_LESS_ERROR = ("{path}: compiled for an NVIDIA GPU of compute capability 9.0 (target 'cuda-sm_90'), but this host "
                  "has no NVIDIA GPU (the CUDA runtime and nvidia-smi see none); run it on a machine with such a GPU")


@pytest.mark.skipif(not NO_GPU, reason="this host has an NVIDIA GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_loading_a_cuda_artifact_without_a_gpu_is_one_clear_error(tmp_path, device):
    import edgec.runtime as rt

    path = _fake_trt_artifact(tmp_path / "m.edgec")
    with pytest.raises(ArtifactError) as info:
        rt.load(path, device=device)
    assert str(info.value) == GPU_LESS_ERROR.format(path=path)


@pytest.mark.skipif(not NO_GPU, reason="this host has an NVIDIA GPU: device='cpu' is then the wrong argument")
def test_a_cuda_artifact_on_a_host_without_a_gpu_is_refused_before_the_backend(tmp_path):
    """Whatever the device asked for: the host cannot run it (ArtifactError, as for another architecture)."""
    import edgec.runtime as rt

    path = _fake_trt_artifact(tmp_path / "m.edgec")
    with pytest.raises(rt.ArtifactError) as info:
        rt.load(path, device="cpu")
    assert str(info.value) == (f"{path}: compiled for cuda (target 'cuda-sm_90'), and this host has no NVIDIA GPU; "
                               "run it on a machine with one, with device='cuda'")


@pytest.mark.skipif(NO_GPU, reason="needs an NVIDIA GPU: without one the host, not the argument, is at fault")
def test_a_cuda_artifact_loaded_for_the_cpu_on_a_gpu_host_is_an_input_error(tmp_path):
    import edgec.runtime as rt

    path = _fake_trt_artifact(tmp_path / "m.edgec")
    with pytest.raises(rt.InputError) as info:
        rt.load(path, device="cpu")
    assert str(info.value) == f"{path}: compiled for cuda (target 'cuda-sm_90'); load it with device='cuda'"


@pytest.mark.skipif(not NO_GPU, reason="this host has an NVIDIA GPU")
def test_tensorrt_executor_imports_neither_torch_nor_onnx(tmp_path):
    """torch and onnx stay importable here (nothing blocked), so an import of either on the load path shows."""
    script = textwrap.dedent("""
        import importlib.util, sys
        assert importlib.util.find_spec("torch") and importlib.util.find_spec("onnx")
        import edgec.runtime as rt
        try:
            rt.load(sys.argv[1], device="cuda")
        except rt.ArtifactError as e:
            print(e)
        print(sorted({k.split(".")[0] for k in sys.modules} & {"torch", "onnx", "onnxscript", "tvm", "tvm_ffi"}))
    """)
    path = _fake_trt_artifact(tmp_path / "m.edgec")
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [GPU_LESS_ERROR.format(path=path), "[]"]


def test_cuda_runtime_is_libcudart_through_ctypes():
    """What the TensorRT executor allocates and copies with: libcudart, no GPU needed to load it."""
    from edgec.runtime import cuda

    try:
        lib = cuda.libcudart()
    except EdgecError as e:
        pytest.skip(str(e))
    assert "cudart" in lib._name
    assert cuda.device_count() == len(local_cuda_archs())
