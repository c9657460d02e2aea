"""The pass manager: registry, per-pass records, numeric validation, and the load-optimize-save flow."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper
from test_passes import bn_node, bn_params, make_model, weight

from edgec.errors import EdgecError, InternalError
from edgec.frontend.loader import input_specs
from edgec.passes import DEFAULT_PIPELINE, PassContext, available_passes, get_pass, optimize_file, run_pipeline
from edgec.passes.validation import Checker
from edgec.runtime.inputs import random_inputs

MY_PASSES = {"batchnorm_to_affine", "cancel_transpose_reshape", "dedup_initializers", "eliminate_common_subexpressions",
             "eliminate_dead", "eliminate_identity", "fold_constants", "fuse_batchnorm", "fuse_matmul_add",
             "infer_shapes", "normalize_opset"}


def conv_bn_model() -> onnx.ModelProto:
    return make_model([helper.make_node("Conv", ["x", "W"], ["c"]), bn_node("bn", "c", "y")],
                      {"x": ["batch", 3, 4, 4]}, {"y": None}, [("W", weight(4, 3, 1, 1)), *bn_params("bn", 4)])


def test_registry_finds_every_pass_file():
    assert MY_PASSES <= set(available_passes())
    assert not {"manager", "validation", "_ir_util", "_batchnorm"} & set(available_passes())
    assert not {"nms_host_split", "lower_rnn"} & set(available_passes())  # compiler/TVM stages, not graph passes
    assert set(DEFAULT_PIPELINE) <= set(available_passes())
    assert callable(get_pass("fuse_batchnorm"))


def test_unknown_pass_is_named():
    with pytest.raises(EdgecError, match=r"^unknown pass 'fuse_everything'; available passes: batchnorm_to_affine, "):
        run_pipeline(conv_bn_model(), ["fuse_everything"], PassContext())


def test_record_counts_ops_params_and_error():
    _, records = run_pipeline(conv_bn_model(), ["fuse_batchnorm"], PassContext())
    record = records[0].to_json()
    assert record["name"] == "fuse_batchnorm"
    assert (record["nodes_before"], record["nodes_after"]) == (2, 1)
    assert record["ops_before"] == {"BatchNormalization": 1, "Conv": 1}
    assert record["ops_after"] == {"Conv": 1}
    assert record["params_bytes_before"] == 4 * (12 + 4 * 4)  # W [4,3,1,1] + gamma, beta, mean, var [4]
    assert record["params_bytes_after"] == 4 * (12 + 4)  # fused W + bias
    assert 0.0 <= record["max_abs_err"] <= 1e-5
    assert record["notes"] == []
    json.dumps(record)


def test_no_validate_records_no_error():
    _, records = run_pipeline(conv_bn_model(), ["fuse_batchnorm"], PassContext(validate=False))
    assert records[0].max_abs_err is None and records[0].validate_seconds == 0.0


def test_random_inputs_set_symbolic_dims_to_one():
    feeds = random_inputs(input_specs(conv_bn_model()))
    assert feeds["x"].shape == (1, 3, 4, 4) and feeds["x"].dtype == np.float32
    assert np.array_equal(feeds["x"], random_inputs(input_specs(conv_bn_model()))["x"])  # deterministic


def _add_model(c: float) -> onnx.ModelProto:
    return make_model([helper.make_node("Add", ["x", "c"], ["y"])], {"x": [2]}, {"y": None},
                      [("c", np.full(2, c, np.float32))])


def test_validation_names_pass_output_error_and_tolerance():
    ctx = PassContext(model_path="m.onnx", options={"validation_inputs": {"x": np.zeros(2, np.float32)}})
    checker = Checker(_add_model(1.0), ctx)
    assert checker.check(_add_model(1.0), "same") == 0.0
    with pytest.raises(InternalError) as e:
        checker.check(_add_model(1.5), "broken")
    assert str(e.value) == ("m.onnx: pass 'broken' changed output 'y' by max abs error 0.5 > tolerance 0.00011 "
                            "(atol 1e-05 + rtol 0.0001 * max|ref|); rerun without it (--passes) or with --no-validate")


def test_validation_with_inputs_that_do_not_fit_says_what_to_do():
    ctx = PassContext(model_path="m.onnx", options={"validation_inputs": {"x": np.zeros(5, np.float32)}})
    with pytest.raises(EdgecError) as e:
        run_pipeline(_add_model(1.0), ["eliminate_dead"], ctx)
    assert str(e.value).startswith("m.onnx: cannot validate passes: ONNX Runtime cannot run the input model (")
    assert str(e.value).endswith("); fix the model, give inputs that fit it, or use --no-validate")


def test_optimize_file_writes_the_optimized_model(tmp_path):
    src, dst = tmp_path / "in.onnx", tmp_path / "out" / "opt.onnx"
    onnx.save(conv_bn_model(), src)
    records = optimize_file(src, dst)
    assert [r.name for r in records] == list(DEFAULT_PIPELINE)
    optimized = onnx.load(dst)
    assert [n.op_type for n in optimized.graph.node] == ["Conv"]
    assert list(tmp_path.joinpath("out").iterdir()) == [dst]


def test_cli_optimize_json(tmp_path):
    from conftest import run_edgec

    src, dst = tmp_path / "in.onnx", tmp_path / "opt.onnx"
    onnx.save(conv_bn_model(), src)
    proc = run_edgec("optimize", src, "-o", dst, "--passes", "fuse_batchnorm,eliminate_dead", "--json", check=True)
    report = json.loads(proc.stdout)
    assert [p["name"] for p in report["passes"]] == ["fuse_batchnorm", "eliminate_dead"]
    assert report["passes"][0]["ops_after"] == {"Conv": 1}
    assert [n.op_type for n in onnx.load(dst).graph.node] == ["Conv"]


def _flatten_model() -> onnx.ModelProto:
    """x [batch, 3, 4, 4] -> Flatten -> MatMul [48, 5]: the batch stays symbolic through the graph."""
    return make_model([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])],
                      {"x": ["batch", 3, 4, 4]}, {"y": None}, [("W", weight(48, 5))])


def bake_batch_one(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    """A wrong "pass": Flatten -> Reshape to [1, -1], right at batch 1 only."""
    out = onnx.ModelProto.FromString(model.SerializeToString())
    flatten = next(n for n in out.graph.node if n.op_type == "Flatten")
    flatten.CopyFrom(helper.make_node("Reshape", [flatten.input[0], "one_row"], list(flatten.output)))
    out.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "one_row"))
    return out


def test_random_inputs_take_the_symbolic_value_given():
    assert random_inputs(input_specs(conv_bn_model()), symbolic=3)["x"].shape == (3, 3, 4, 4)


def test_validation_rejects_a_pass_that_bakes_batch_one_into_a_reshape(monkeypatch):
    from edgec.passes import manager

    real = manager.get_pass
    monkeypatch.setattr(manager, "get_pass", lambda name: bake_batch_one if name == "bake_batch_one" else real(name))
    _, records = run_pipeline(_flatten_model(), ["bake_batch_one"], PassContext(validate=False))
    assert records[0].ops_after == {"MatMul": 1, "Reshape": 1}  # unvalidated, the wrong graph lands
    with pytest.raises(InternalError) as e:
        run_pipeline(_flatten_model(), ["eliminate_dead", "bake_batch_one"], PassContext(model_path="m.onnx"))
    assert str(e.value).startswith("m.onnx: pass 'bake_batch_one' produced a model ONNX Runtime cannot run with "
                                   "symbolic dims = 3 (")


def test_validation_checks_both_symbolic_sizes_and_notes_one_the_model_cannot_run():
    ctx = PassContext(model_path="m.onnx")
    checker = Checker(_flatten_model(), ctx)
    assert sorted(checker.feeds) == ["symbolic dims = 1", "symbolic dims = 3"] and ctx.notes == []
    fixed = _flatten_model()  # a Reshape to [1, 48] in the input model itself: runs at batch 1 only
    fixed.graph.node[0].CopyFrom(helper.make_node("Reshape", ["x", "one_row"], ["f"]))
    fixed.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "one_row"))
    ctx = PassContext(model_path="m.onnx")
    assert list(Checker(fixed, ctx).feeds) == ["symbolic dims = 1"]
    assert ctx.notes[0].startswith("validated without symbolic dims = 3: the input model does not run so (")
