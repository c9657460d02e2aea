"""The `shapes` detector: dataset, COCO mAP, committed weights, NMS in the export, and issue 6's acceptance:
TVM and ORT mAP equal to PyTorch's within 0.005 and TVM's selections identical to ORT's on the test split."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgec import runtime
from edgec.compiler import compile_model
from edgec.frontend.export import export_onnx
from edgec.metrics.detection import coco_map
from edgec.zoo import detector, registry, shapes, train
from tests.conftest import run_edgec

BATCH = 100


def test_shapes_is_deterministic_with_boxes_inside_the_image():
    test = shapes.part("test")
    assert test.x.shape == (shapes.N_TEST, 3, 64, 64) and test.x.dtype == np.float32
    assert 0 <= test.x.min() and test.x.max() <= 1
    boxes = np.concatenate(test.boxes)
    assert (boxes >= 0).all() and (boxes <= 64).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    assert set(np.concatenate(test.labels)) == {0, 1, 2} and 1 <= min(map(len, test.labels))
    again = shapes._generate(np.random.default_rng(np.random.SeedSequence(shapes.SEED).spawn(2)[1]), 5, 64)
    np.testing.assert_array_equal(again.x, test.x[:5])
    np.testing.assert_array_equal(np.concatenate(again.boxes), np.concatenate(test.boxes[:5]))


def test_coco_map_on_known_cases():
    gt_boxes = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([[0, 0, 10, 10]], np.float32)]
    gt_labels = [np.array([0, 1]), np.array([0])]
    perfect = [(b, np.ones(len(b)), lab) for b, lab in zip(gt_boxes, gt_labels)]
    assert coco_map(perfect, gt_boxes, gt_labels, 2)["map_50_95"] == 1.0
    # class 0: a false positive scored above both hits -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1; the
    # interpolated precision (max at any higher recall) is 2/3 at every one of the 101 recall points
    fp = np.array([[50, 50, 60, 60]], np.float32)
    preds = [(np.concatenate([fp, gt_boxes[0]]), np.array([0.9, 0.8, 0.8]), np.array([0, 0, 1])),
             (gt_boxes[1], np.array([0.7]), np.array([0]))]
    result = coco_map(preds, gt_boxes, gt_labels, 2)
    assert result["ap_per_class"][1] == 1.0
    assert result["ap_per_class"][0] == pytest.approx(2 / 3)
    assert result["map_50"] == pytest.approx((1 + 2 / 3) / 2)
    # a box shifted by 1 px on a 10 px box: IoU 81/119 = 0.68 -> a hit at 0.50..0.65, a miss from 0.70
    shifted = [(gt_boxes[1] + [1, 1, 1, 1], np.array([1.0]), np.array([0]))]
    assert coco_map(shifted, gt_boxes[1:], gt_labels[1:], 1)["map_50_95"] == pytest.approx(0.4)


def test_committed_weights_meet_the_bar():
    for name in ("detector", "detector-raw"):
        entry = registry.get(name)
        metrics = train.cached_metrics(name)
        assert metrics["architecture"] == train.architecture_key(entry.build())
        assert (train.WEIGHTS_DIR / f"{name}.pt").stat().st_size <= 5 << 20
        assert metrics["map_50"] >= 0.7 and metrics["test_accuracy"] == metrics["map_50"]
        assert 0 < metrics["map_50_95"] < metrics["map_50"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(ONNX path, PyTorch outputs per test batch of 100) for the trained detector."""
    net = train.load_trained("detector")
    path = export_onnx(net, (1, 3, 64, 64), tmp_path_factory.mktemp("det") / "detector.onnx",
                       output_names=detector.OUTPUTS)
    x = shapes.part("test").x
    with torch.no_grad():
        ref = [[o.numpy() for o in net(torch.from_numpy(x[i:i + BATCH]))] for i in range(0, len(x), BATCH)]
    return path, ref


def _map(batches) -> float:
    test = shapes.part("test")
    dets = [d for boxes, scores, selected in batches for d in detector.detections(boxes, scores, selected)]
    return coco_map(dets, test.boxes, test.labels, len(shapes.CLASSES))["map_50"]


def test_export_carries_nms_and_raw_variant_does_not(exported, tmp_path):
    ops = [n.op_type for n in onnx.load(exported[0]).graph.node]
    assert ops.count("NonMaxSuppression") == 1
    raw = export_onnx(train.load_trained("detector-raw"), (1, 3, 64, 64), tmp_path / "raw.onnx",
                      output_names=detector.RAW_OUTPUTS)
    model = onnx.load(raw)
    assert "NonMaxSuppression" not in [n.op_type for n in model.graph.node]
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]


@pytest.fixture(scope="module")
def backend_outputs(exported, tmp_path_factory):
    """backend -> outputs per test batch of 100 (batch > 1 through the compiled artifact)."""
    out = tmp_path_factory.mktemp("det-art")
    x = shapes.part("test").x
    result = {}
    for backend in ("ort", "tvm"):
        module = runtime.load(compile_model(exported[0], "cpu", out / f"{backend}.edgec", backend=backend).path)
        assert module.manifest["nms"]["nodes"][0]["runs_on"] == backend
        result[backend] = [list(module.run({"input": x[i:i + BATCH]}).values()) for i in range(0, len(x), BATCH)]
    return result


def test_backend_map_equals_pytorch_within_0_005(exported, backend_outputs):
    reference = _map(exported[1])
    assert reference >= 0.7
    for backend, batches in backend_outputs.items():
        assert abs(_map(batches) - reference) <= 0.005, backend


def test_tvm_selects_exactly_what_ort_selects(backend_outputs):
    for (t_boxes, t_scores, t_sel), (o_boxes, o_scores, o_sel) in zip(backend_outputs["tvm"], backend_outputs["ort"]):
        np.testing.assert_array_equal(t_sel, o_sel)
        b, c, n = o_sel.T
        np.testing.assert_allclose(t_boxes[b, n], o_boxes[b, n], atol=1e-4, rtol=0)
        np.testing.assert_allclose(t_scores[b, c, n], o_scores[b, c, n], atol=1e-4, rtol=0)


def test_ort_selects_what_pytorch_selects(exported):
    x = shapes.part("test").x[:BATCH]
    got = ort.InferenceSession(str(exported[0])).run(None, {"input": x})
    np.testing.assert_array_equal(got[2], exported[1][0][2])


@pytest.mark.slow
def test_report_gives_map_per_backend(tmp_path):
    run_edgec("report", "detector", "--targets", "cpu", "--precisions", "fp32", "--dataset", "shapes",
              "-o", tmp_path, check=True)
    import json

    report = json.loads((tmp_path / "report.json").read_text())
    rows = {r["backend"]: r for r in report["rows"]}
    assert report["dataset"] == "shapes" and report["n_eval"] == shapes.N_TEST
    for backend in ("tvm", "ort"):
        assert rows[backend]["status"] == "ok"
        assert abs(rows[backend]["accuracy"] - rows["pytorch"]["accuracy"]) <= 0.005
        assert rows[backend]["map_50_95"] is not None and rows[backend]["top1_agreement"] == 1.0
