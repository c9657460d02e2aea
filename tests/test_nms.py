"""NonMaxSuppression on every path: numpy host NMS vs ONNX Runtime, and a hand-built (not exported) NMS graph
compiled for `--target cpu` by TVM, ORT and the host fallback, each selecting exactly what ORT selects."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import runtime
from edgec.compiler import compile_model
from edgec.errors import UnsupportedError
from edgec.runtime.host_nms import non_max_suppression
from tests.conftest import run_edgec

N, C = 40, 3


def nms_model(k=4, iou=0.5, score=0.3, center_point_box=0, consumer=False) -> onnx.ModelProto:
    """boxes [B, N, 4], scores [B, C, N] -> NonMaxSuppression (constant k / iou / score) -> selected [M, 3]."""
    consts = [numpy_helper.from_array(np.array([k], np.int64), "k"),
              numpy_helper.from_array(np.array([iou], np.float32), "iou")]
    inputs = ["boxes", "scores", "k", "iou"]
    if score is not None:
        consts.append(numpy_helper.from_array(np.array([score], np.float32), "score"))
        inputs.append("score")
    nodes = [helper.make_node("NonMaxSuppression", inputs, ["selected"], name="nms", center_point_box=center_point_box)]
    outputs = [helper.make_tensor_value_info("selected", TensorProto.INT64, ["M", 3])]
    if consumer:  # a node reading the NMS rows: the box index column
        consts.append(numpy_helper.from_array(np.array(2, np.int64), "two"))
        nodes.append(helper.make_node("Gather", ["selected", "two"], ["box_index"], name="take_box", axis=1))
        outputs = [helper.make_tensor_value_info("box_index", TensorProto.INT64, ["M"])]
    graph = helper.make_graph(nodes, "nms", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["B", N, 4]),
                                             helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["B", C, N])],
                              outputs, consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def cases(batch: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, (batch, N, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.05, 0.4, (batch, N, 2))], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (batch, C, N)).astype(np.float32)
    same = np.tile(np.array([0.1, 0.2, 0.5, 0.7], np.float32), (batch, N, 1))
    return {"random": (boxes, scores),
            "none_above_threshold": (boxes, scores * np.float32(0.25)),
            "all_boxes_identical": (same, np.full((batch, C, N), 0.9, np.float32)),
            "identical_boxes_distinct_scores": (same, scores),
            "tied_scores": (boxes, np.round(scores * 4) / 4),
            "batch_1": (boxes[:1], scores[:1])}


def ort_select(model: onnx.ModelProto, boxes, scores) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"boxes": boxes, "scores": scores})[0]


@pytest.mark.parametrize("attrs", [{}, {"k": 100, "iou": 0.3, "score": None}, {"center_point_box": 1},
                                   {"k": 1, "iou": 0.0, "score": 0.9}, {"k": 0}])
def test_host_nms_matches_onnxruntime(attrs):
    model = nms_model(**attrs)
    for name, (boxes, scores) in cases(3).items():
        want = ort_select(model, boxes, scores)
        got = non_max_suppression(boxes, scores, attrs.get("k", 4), attrs.get("iou", 0.5), attrs.get("score", 0.3),
                                  attrs.get("center_point_box", 0))
        assert got.dtype == np.int64 and got.shape[1:] == (3,)
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_edge_cases_select_what_the_spec_says():
    selected = {name: non_max_suppression(b, s, 4, 0.5, 0.3) for name, (b, s) in cases(2).items()}
    assert selected["none_above_threshold"].shape == (0, 3)
    # identical boxes: one survivor per (image, class), the lowest index among equal scores
    assert selected["all_boxes_identical"].tolist() == [[b, c, 0] for b in range(2) for c in range(C)]
    assert set(selected["random"][:, 0]) == {0, 1}


@pytest.fixture(scope="module")
def handbuilt(tmp_path_factory):
    path = tmp_path_factory.mktemp("nms") / "nms.onnx"
    onnx.save(nms_model(), path)
    return path


@pytest.mark.parametrize("backend,nms,runs_on", [("tvm", "auto", "tvm"), ("ort", "auto", "ort"),
                                                 ("ort", "host", "host"), ("tvm", "host", "host")])
def test_handbuilt_nms_compiles_for_cpu_and_selects_what_ort_selects(handbuilt, tmp_path, backend, nms, runs_on):
    result = compile_model(handbuilt, "cpu", tmp_path / "nms.edgec", backend=backend, nms=nms)
    decision = result.manifest["nms"]["nodes"]
    assert [d["runs_on"] for d in decision] == [runs_on]
    assert ("nms_host_split" in result.manifest["passes"]) == (runs_on == "host")
    module = runtime.load(result.path)
    model = onnx.load(handbuilt)
    for name, (boxes, scores) in cases(2).items():
        got = module.run({"boxes": boxes, "scores": scores})["selected"]
        np.testing.assert_array_equal(got, ort_select(model, boxes, scores), err_msg=name)


def test_inspect_shows_where_nms_runs(handbuilt, tmp_path):
    compile_model(handbuilt, "cpu", tmp_path / "host.edgec", backend="ort", nms="host")
    out = run_edgec("inspect", tmp_path / "host.edgec", check=True).stdout
    assert "NMS node 'nms' (op NonMaxSuppression): runs on host, host_nms (numpy) (requested with --nms host)" in out


def test_tvm_refuses_nms_rows_read_inside_the_graph(tmp_path):
    path = tmp_path / "consumer.onnx"
    onnx.save(nms_model(consumer=True), path)
    with pytest.raises(UnsupportedError, match="node 'nms' .* must run on the host but its output 'selected' is read "
                                               "by take_box; .* --backend ort"):
        compile_model(path, "cpu", tmp_path / "c.edgec", backend="tvm")
    assert not (tmp_path / "c.edgec").exists()
    module = runtime.load(compile_model(path, "cpu", tmp_path / "c.edgec", backend="ort").path)
    boxes, scores = cases(2)["random"]
    want = ort_select(nms_model(consumer=True), boxes, scores)
    np.testing.assert_array_equal(module.run({"boxes": boxes, "scores": scores})["box_index"], want)


BLOCKED_RUN = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "onnx", "onnxscript", "onnx_ir", "models"):
                raise ImportError(f"blocked import of {name}")
    sys.meta_path.insert(0, Block())
    import numpy as np
    import edgec.runtime as rt
    boxes = np.tile(np.array([0, 0, 1, 1], np.float32), (2, 40, 1))
    out = rt.load(sys.argv[1]).run({"boxes": boxes, "scores": np.full((2, 3, 40), 0.9, np.float32)})
    print(out["selected"].tolist())
""")


def test_host_nms_runs_without_torch_or_onnx(handbuilt, tmp_path):
    path = compile_model(handbuilt, "cpu", tmp_path / "host.edgec", backend="ort", nms="host").path
    proc = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str([[b, c, 0] for b in range(2) for c in range(C)])


@pytest.mark.parametrize("target", ["x86-64-avx2", "x86-64-avx512"])
def test_tvm_nms_kernel_does_not_fork_per_kept_box(target):
    """TVM's NMS kernel marks its suppression loop parallel inside the loop over the boxes it keeps: a thread-pool
    fork/join per kept box (the zoo detector's NMS: 280-390 us on 2 threads, 17-38 us serial). edgec's CPU pipeline
    runs every parallel loop of that kernel serially (`schedules.cpu.small_parallel`)."""
    tvm = pytest.importorskip("tvm")
    import tvm_ffi
    from tvm import tirx

    from edgec.backends.base import CompileOptions
    from edgec.backends.tvm import pipelines
    from edgec.backends.tvm.backend import import_relax
    from edgec.targets import resolve_target

    parallel = {}

    @tvm.transform.module_pass(opt_level=0)
    def record(mod, _ctx):
        for gvar, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc):
                loops = []
                tvm_ffi.structural_walk(func, (tirx.For, lambda loop: loops.append(loop.kind)))
                parallel[gvar.name_hint] = loops.count(tirx.ForKind.PARALLEL)
        return mod

    mod, _ = import_relax(nms_model(), "nms.onnx")
    with tvm.transform.PassContext(opt_level=3):
        tvm.transform.Sequential([pipelines.relax_pipeline(resolve_target(target), CompileOptions()), record])(mod)
    nms = [name for name in parallel if "non_max_suppression" in name]
    assert nms and all(parallel[name] == 0 for name in nms), parallel
