"""`edgec tune` and `edgec compile --tuning-db` on a one-conv model: the database is written per target,
reruns resume, compile applies exactly the records that beat the rules and still matches ONNX Runtime,
and targets this host cannot run are refused."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.backends.tvm.tuning.database.store import Store
from edgec.backends.tvm.tuning.search.tuner import tune_model
from edgec.compiler import compile_model
from edgec.errors import UnsupportedError
from tests.conftest import run_edgec

TARGET = "x86-64-avx2"


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory):
    return one_conv_model(tmp_path_factory.mktemp("tune") / "conv.onnx")


def one_conv_model(path):
    """Conv 8->16 (3x3, pad 1) + bias + ReLU on a fixed 1x8x16x16 input: one fused kernel worth tuning."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((0.1 * rng.standard_normal((16, 8, 3, 3))).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])], [weight, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def tuned_db(conv_onnx, tmp_path_factory):
    """The CLI tunes the model with a few trials into a fresh database."""
    db = tmp_path_factory.mktemp("db")
    proc = run_edgec("tune", conv_onnx, "--target", TARGET, "--trials", "6", "--tuning-db", db, "--json", check=True)
    return db, json.loads(proc.stdout)


def _conv_key(db) -> str:
    from edgec.targets import resolve_target

    kernels = Store(db, resolve_target(TARGET)).kernels()
    return next(k for k, v in kernels.items() if v["task"].startswith("fused_conv2d"))


def test_tune_writes_a_database_per_target(tuned_db):
    db, report = tuned_db
    assert (db / TARGET / "database_tuning_record.json").stat().st_size > 0
    conv = next(k for k in report["tuned"] if k["task"].startswith("fused_conv2d"))
    assert conv["trials"] > 0 and conv["best_ms"] > 0 and conv["rules_ms"] > 0
    assert report["already_tuned"] == [] and report["symbolic"] == []


def test_rerun_resumes_without_tuning_again(conv_onnx, tuned_db):
    db, first = tuned_db
    again = tune_model(str(conv_onnx), TARGET, 6, str(db))
    assert again.tuned == [] and sorted(again.already_tuned) == sorted(k["task"] for k in first["tuned"])


def _set_rules_time(db, key: str, seconds: float) -> None:
    from edgec.targets import resolve_target

    store = Store(db, resolve_target(TARGET))
    kernels = store.kernels()
    kernels[key]["rules_s"] = seconds
    store.save_kernels(kernels)


def test_compile_applies_records_that_beat_the_rules(conv_onnx, tuned_db, tmp_path):
    import onnxruntime as ort

    import edgec.runtime as rt

    db, _ = tuned_db
    key = _conv_key(db)
    _set_rules_time(db, key, 1.0)  # rules "took" 1 s: the database's conv record wins
    result = compile_model(conv_onnx, TARGET, tmp_path / "tuned.edgec", tuning_db=str(db))
    tuning = result.manifest["backend_config"]["tuning"]
    assert [k for k in tuning["kernels_from_db"] if k.startswith("fused_conv2d")] == tuning["kernels_from_db"] != []
    x = np.random.default_rng(1).random((1, 8, 16, 16), dtype=np.float32)
    expected = ort.InferenceSession(str(conv_onnx), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(rt.load(result.path)(x)[0] - expected).max() < 1e-4

    _set_rules_time(db, key, 0.0)  # rules faster than every record: nothing comes from the database
    result = compile_model(conv_onnx, TARGET, tmp_path / "rules.edgec", tuning_db=str(db))
    assert result.manifest["backend_config"]["tuning"]["kernels_from_db"] == []


def test_compile_without_records_for_the_target_says_what_to_run(conv_onnx, tmp_path):
    (tmp_path / "db").mkdir()
    proc = run_edgec("compile", conv_onnx, "--target", TARGET, "--tuning-db", tmp_path / "db",
                     "-o", tmp_path / "x.edgec")
    assert proc.returncode == 2
    assert f"has no records for target '{TARGET}'" in proc.stderr and "edgec tune MODEL --target" in proc.stderr


def test_cuda_tuning_is_refused_without_its_gpu(conv_onnx, tmp_path):
    from edgec.report.host import gpus

    if gpus():
        pytest.skip("this host has a GPU")
    proc = run_edgec("tune", conv_onnx, "--target", "cuda-sm_90", "--tuning-db", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "edgec: error: cannot tune target 'cuda-sm_90' here: tuning measures every candidate kernel on an sm_90 "
        "GPU and this host has none; run `edgec tune` on a machine with that GPU")


def test_cross_targets_are_refused(conv_onnx, tmp_path):
    with pytest.raises(UnsupportedError, match=r"cannot tune target 'aarch64' here: its code runs on aarch64"):
        tune_model(str(conv_onnx), "aarch64", 4, str(tmp_path))


def test_a_failed_tune_leaves_the_database_as_it_was(tmp_path):
    from edgec.targets import resolve_target

    store = Store(tmp_path / "db", resolve_target(TARGET))
    store.save_kernels({"k": {"task": "fused_conv2d", "rules_s": 1e-4, "trials": 2}})
    before = store.kernels_path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with store.staged() as staged:
            staged.save_kernels({"k": {"task": "fused_conv2d", "rules_s": 1e-4, "trials": 4}, "j": {"task": "x"}})
            raise KeyboardInterrupt  # a tune interrupted half-way
    assert store.kernels_path.read_bytes() == before and sorted(p.name for p in store.root.iterdir()) == [TARGET]
    with store.staged() as staged:  # a tune that completes: moved into place
        staged.save_kernels({"j": {"task": "x"}})
    assert store.kernels() == {"j": {"task": "x"}} and sorted(p.name for p in store.root.iterdir()) == [TARGET]

    fresh = Store(tmp_path / "new" / "db", resolve_target(TARGET))
    with pytest.raises(RuntimeError):
        with fresh.staged():
            raise RuntimeError("the board went away")
    assert not (tmp_path / "new").exists()  # no directory made for it is left either
