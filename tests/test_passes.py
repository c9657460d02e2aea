"""Graph passes on hand-built ONNX graphs, one edge case per test: op histograms and outputs within 1e-5."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.errors import EdgecError
from edgec.frontend.loader import input_specs
from edgec.frontend.reference import Reference
from edgec.metrics.compare import errors
from edgec.passes import DEFAULT_PIPELINE, PassContext, get_pass, run_pipeline
from edgec.passes.manager import op_histogram
from edgec.runtime.inputs import random_inputs

RNG = np.random.default_rng(1234)


def weight(*shape, low=-1.0, high=1.0) -> np.ndarray:
    return RNG.uniform(low, high, shape).astype(np.float32)


def bn_params(prefix: str, channels: int) -> list[onnx.TensorProto]:
    """Non-trivial BN parameters (gamma, beta, mean, var), so a wrong fusion shows in the numbers."""
    arrays = [weight(channels, low=0.5, high=2.0), weight(channels), weight(channels),
              weight(channels, low=0.25, high=2.0)]
    return [numpy_helper.from_array(a, f"{prefix}_{k}") for a, k in zip(arrays, ("gamma", "beta", "mean", "var"))]


def bn_node(prefix: str, x: str, y: str, **attrs) -> onnx.NodeProto:
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}_{k}" for k in ("gamma", "beta", "mean", "var")],
                            [y], name=prefix, **attrs)


def make_model(nodes, inputs: dict[str, list], outputs: dict[str, list | None], initializers=(),
               opset: int = 17, extra_outputs=()) -> onnx.ModelProto:
    """A checked float32 model; shapes are lists of ints or symbol names (None = unknown shape);
    initializers are TensorProtos or (name, array) pairs."""
    def info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    graph = helper.make_graph(nodes, "g", [info(n, s) for n, s in inputs.items()],
                              [info(n, s) for n, s in outputs.items()] + list(extra_outputs),
                              [t if isinstance(t, onnx.TensorProto) else numpy_helper.from_array(t[1], t[0])
                               for t in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def optimize(model: onnx.ModelProto, names=None, **ctx_args) -> onnx.ModelProto:
    optimized, _ = run_pipeline(model, names or DEFAULT_PIPELINE, PassContext(**ctx_args))
    onnx.checker.check_model(optimized, full_check=True)
    return optimized


def assert_same_outputs(a: onnx.ModelProto, b: onnx.ModelProto, atol: float = 1e-5, seed: int = 7) -> None:
    feeds = random_inputs(input_specs(a), seed=seed)
    before, after = Reference(a).run(feeds), Reference(b).run(feeds)
    assert before.keys() == after.keys()
    for name in before:
        assert before[name].shape == after[name].shape
        assert errors(after[name], before[name]).max_abs_err <= atol, name


def ops(model: onnx.ModelProto) -> dict[str, int]:
    return op_histogram(model)


# --- BatchNormalization fusion ------------------------------------------------------------------------------

# The default pipeline plus the opt-in lowering of BatchNormalization that cannot fuse into Mul + Add.
WITH_AFFINE = [*DEFAULT_PIPELINE[:DEFAULT_PIPELINE.index("fuse_batchnorm") + 1], "batchnorm_to_affine",
               *DEFAULT_PIPELINE[DEFAULT_PIPELINE.index("fuse_batchnorm") + 1:]]

@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("group", [1, 2, 8])  # plain, grouped, depthwise (group == channels == 8)
def test_conv_bn_fuses(bias, group):
    inits = [("W", weight(8, 8 // group, 3, 3)), *([("B", weight(8))] if bias else []), *bn_params("bn", 8)]
    conv = helper.make_node("Conv", ["x", "W"] + (["B"] if bias else []), ["c"], group=group, pads=[1, 1, 1, 1])
    model = make_model([conv, bn_node("bn", "c", "y")], {"x": ["N", 8, 6, 6]}, {"y": None}, inits)
    out = optimize(model)
    assert ops(out) == {"Conv": 1}
    assert_same_outputs(model, out)


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_bn_fuses(group):
    inits = [("W", weight(4, 6 // group, 2, 2)), ("B", weight(6)), *bn_params("bn", 6)]
    conv = helper.make_node("ConvTranspose", ["x", "W", "B"], ["c"], group=group, strides=[2, 2])
    model = make_model([conv, bn_node("bn", "c", "y")], {"x": [1, 4, 5, 5]}, {"y": None}, inits)
    out = optimize(model)
    assert ops(out) == {"ConvTranspose": 1}
    assert_same_outputs(model, out)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_bn_fuses_with_beta(trans_b):
    w = weight(5, 3) if trans_b else weight(3, 5)
    gemm = helper.make_node("Gemm", ["x", "W", "C"], ["g"], transB=trans_b, alpha=0.5, beta=2.0)
    model = make_model([gemm, bn_node("bn", "g", "y")], {"x": [4, 3]}, {"y": None},
                       [("W", w), ("C", weight(5)), *bn_params("bn", 5)])
    out = optimize(model)
    assert ops(out) == {"Gemm": 1}
    assert_same_outputs(model, out)


def test_matmul_bn_becomes_one_gemm():
    model = make_model([helper.make_node("MatMul", ["x", "W"], ["m"]), bn_node("bn", "m", "y")],
                       {"x": ["N", 3]}, {"y": None}, [("W", weight(3, 5)), *bn_params("bn", 5)])
    out = optimize(model)
    assert ops(out) == {"Gemm": 1}
    assert_same_outputs(model, out)


def test_shared_conv_weight_is_copied_not_mutated():
    """Two Convs read one weight and each feeds its own BN: both fuse, into two different weights."""
    nodes = [helper.make_node("Conv", ["x", "W"], ["c1"]), bn_node("bn1", "c1", "y1"),
             helper.make_node("Conv", ["x", "W"], ["c2"]), bn_node("bn2", "c2", "y2")]
    model = make_model(nodes, {"x": [1, 3, 4, 4]}, {"y1": None, "y2": None},
                       [("W", weight(4, 3, 1, 1)), *bn_params("bn1", 4), *bn_params("bn2", 4)])
    snapshot = model.SerializeToString()
    out = optimize(model)
    assert model.SerializeToString() == snapshot  # the input model is untouched
    assert ops(out) == {"Conv": 2}
    assert len({n.input[1] for n in out.graph.node}) == 2
    assert_same_outputs(model, out)


def test_shared_weight_with_unfused_user_keeps_original():
    """Conv A + BN fuses; Conv B reads the same weight without BN and must still see the original."""
    nodes = [helper.make_node("Conv", ["x", "W"], ["c1"]), bn_node("bn", "c1", "y1"),
             helper.make_node("Conv", ["x", "W"], ["y2"])]
    model = make_model(nodes, {"x": [1, 3, 4, 4]}, {"y1": None, "y2": None},
                       [("W", weight(4, 3, 1, 1)), *bn_params("bn", 4)])
    out = optimize(model)
    assert ops(out) == {"Conv": 2}
    assert_same_outputs(model, out)


def test_conv_output_with_other_consumer_is_not_fused():
    """The Conv output also feeds a Relu: folding BN into the Conv would change the Relu's input."""
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), bn_node("bn", "c", "y1"),
             helper.make_node("Relu", ["c"], ["y2"])]
    model = make_model(nodes, {"x": [1, 3, 4, 4]}, {"y1": None, "y2": None},
                       [("W", weight(4, 3, 3, 3)), *bn_params("bn", 4)])
    out, records = run_pipeline(model, DEFAULT_PIPELINE, PassContext())
    assert ops(out) == {"BatchNormalization": 1, "Conv": 1, "Relu": 1}
    assert next(r for r in records if r.name == "fuse_batchnorm").notes == [
        "kept 1 of 1 BatchNormalization nodes (bn): each needs a Conv, ConvTranspose, Gemm or rank-2 MatMul with "
        "constant weights whose output nothing else reads"]
    assert_same_outputs(model, out)
    lowered = optimize(model, WITH_AFFINE)
    assert ops(lowered) == {"Add": 1, "Conv": 1, "Mul": 1, "Relu": 1}
    assert_same_outputs(model, lowered)


def test_conv_output_that_is_a_graph_output_is_not_fused():
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), bn_node("bn", "c", "y")]
    model = make_model(nodes, {"x": [1, 3, 4, 4]}, {"c": None, "y": None},
                       [("W", weight(4, 3, 1, 1)), *bn_params("bn", 4)])
    out = optimize(model, WITH_AFFINE)
    assert ops(out) == {"Add": 1, "Conv": 1, "Mul": 1}
    assert [o.name for o in out.graph.output] == ["c", "y"]
    assert_same_outputs(model, out)


@pytest.mark.parametrize("shape", [["N", 4], ["N", 4, 7], [2, 4, 3, 3]])
def test_lone_bn_becomes_mul_add_on_request(shape):
    model = make_model([bn_node("bn", "x", "y", epsilon=1e-3)], {"x": shape}, {"y": None}, bn_params("bn", 4))
    assert ops(optimize(model)) == {"BatchNormalization": 1}
    out = optimize(model, WITH_AFFINE)
    assert ops(out) == {"Add": 1, "Mul": 1}
    assert_same_outputs(model, out)


def test_bn_with_non_constant_scale_stays_with_note():
    model = make_model([bn_node("bn", "x", "y")], {"x": [1, 4, 2, 2], "bn_gamma": [4]}, {"y": None},
                       bn_params("bn", 4)[1:])
    ctx = PassContext()
    out, records = run_pipeline(model, ["fuse_batchnorm", "batchnorm_to_affine"], ctx)
    assert ops(out) == {"BatchNormalization": 1}
    assert records[1].notes == ["kept BatchNormalization 'bn': training outputs, non-constant parameters or "
                                "unknown input rank"]


def test_bn_chain_after_conv_fuses_twice():
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), bn_node("bn1", "c", "b"), bn_node("bn2", "b", "y")]
    model = make_model(nodes, {"x": [1, 2, 4, 4]}, {"y": None},
                       [("W", weight(3, 2, 3, 3)), *bn_params("bn1", 3), *bn_params("bn2", 3)])
    out = optimize(model)
    assert ops(out) == {"Conv": 1}
    assert_same_outputs(model, out)


# --- Identity / Dropout -------------------------------------------------------------------------------------

def _dropout_model(opset: int, extra_inputs=(), mask=False, inits=()):
    """Relu -> Dropout -> Identity; opset < 12 takes the ratio as an attribute, later ones as an input."""
    attrs = {"ratio": 0.5} if opset < 12 else {}
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Dropout", ["r", *extra_inputs], ["d", "mask"] if mask else ["d"], **attrs),
             helper.make_node("Identity", ["d"], ["y"])]
    extra = [helper.make_tensor_value_info("mask", TensorProto.BOOL, None)] if mask else []
    return make_model(nodes, {"x": [2, 3]}, {"y": None}, inits, opset=opset, extra_outputs=extra)


@pytest.mark.parametrize("case", ["opset11", "no_flag", "flag_false", "ratio_zero"])
def test_inference_dropout_and_identity_removed(case):
    ratio = ("ratio", np.array(0.0 if case == "ratio_zero" else 0.5, np.float32))
    flag = ("training", np.array(case == "ratio_zero"))
    model = {"opset11": lambda: _dropout_model(11),
             "no_flag": lambda: _dropout_model(13),
             "flag_false": lambda: _dropout_model(13, ["ratio", "training"], inits=[ratio, flag]),
             "ratio_zero": lambda: _dropout_model(13, ["ratio", "training"], inits=[ratio, flag])}[case]()
    out = optimize(model)
    assert ops(out) == {"Relu": 1}
    assert [o.name for o in out.graph.output] == ["y"]
    assert_same_outputs(model, out)


def test_training_dropout_stays():
    model = _dropout_model(13, ["ratio", "training"],
                           inits=[("ratio", np.array(0.5, np.float32)), ("training", np.array(True))])
    out = optimize(model, validate=False)
    assert ops(out) == {"Dropout": 1, "Relu": 1}


def test_dropout_whose_mask_is_used_becomes_constant_true():
    model = _dropout_model(13, mask=True)
    out = optimize(model)
    assert ops(out) == {"Relu": 1}  # the all-true mask: ConstantOfShape of a static shape, folded to a weight
    assert [t.name for t in out.graph.initializer] == ["mask"]
    assert_same_outputs(model, out)


def test_identity_from_input_to_output_stays():
    model = make_model([helper.make_node("Identity", ["x"], ["y"])], {"x": [2]}, {"y": None})
    assert ops(optimize(model)) == {"Identity": 1}


# --- Transpose / Reshape ------------------------------------------------------------------------------------

def test_transpose_pairs_cancel_also_through_unary_ops():
    nodes = [helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2]),
             helper.make_node("Transpose", ["t2"], ["t3"], perm=[0, 2, 3, 1]),
             helper.make_node("LeakyRelu", ["t3"], ["r"], alpha=0.2),
             helper.make_node("Sigmoid", ["r"], ["s"]),
             helper.make_node("Transpose", ["s"], ["y"], perm=[0, 3, 1, 2])]
    model = make_model(nodes, {"x": ["N", 2, 3, 4]}, {"y": None})
    out = optimize(model)
    assert ops(out) == {"LeakyRelu": 1, "Sigmoid": 1}
    assert_same_outputs(model, out)


def test_transpose_pair_that_does_not_cancel_merges():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             helper.make_node("Transpose", ["t"], ["y"], perm=[0, 2, 1])]
    out = optimize(make_model(nodes, {"x": [2, 3, 4]}, {"y": None}))
    assert ops(out) == {"Transpose": 1}
    assert list(out.graph.node[0].attribute[0].ints) == [1, 2, 0]


def test_reshape_round_trip_with_symbolic_batch_cancels():
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["r"]), helper.make_node("Relu", ["r"], ["a"]),
             helper.make_node("Reshape", ["a", "s2"], ["b"]), helper.make_node("Reshape", ["b", "s3"], ["y"])]
    inits = [("s1", np.array([-1, 4, 4], np.int64)), ("s2", np.array([-1, 2, 8], np.int64)),
             ("s3", np.array([0, 4, 4], np.int64))]
    model = make_model(nodes, {"x": ["N", 16]}, {"y": None}, inits)
    out = optimize(model)
    assert ops(out) == {"Relu": 1, "Reshape": 1}
    assert_same_outputs(model, out)


# --- constants, duplicates, dead code -----------------------------------------------------------------------

def test_constant_subgraph_folds_and_duplicates_merge():
    """Constant -> Mul -> Transpose feeds Add; two identical weights; a dead branch and an unused weight."""
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(weight(3, 2), "k")),
             helper.make_node("Mul", ["k", "two"], ["k2"]),
             helper.make_node("Transpose", ["k2"], ["kt"], perm=[1, 0]),
             helper.make_node("Add", ["x", "kt"], ["a"]),
             helper.make_node("Mul", ["a", "w1"], ["m1"]),
             helper.make_node("Mul", ["m1", "w2"], ["y"]),
             helper.make_node("Exp", ["x"], ["dead"])]
    w = weight(2, 3)
    model = make_model(nodes, {"x": [2, 3]}, {"y": None},
                       [("two", np.array(2.0, np.float32)), ("w1", w), ("w2", w.copy()), ("unused", weight(9))])
    out = optimize(model)
    assert ops(out) == {"Add": 1, "Mul": 2}
    assert sorted(t.name for t in out.graph.initializer) != [] and len(out.graph.initializer) == 2
    assert_same_outputs(model, out)


def test_duplicate_initializers_merge_alone():
    nodes = [helper.make_node("Add", ["x", "a"], ["s"]), helper.make_node("Add", ["s", "b"], ["y"])]
    c = weight(3)
    model = make_model(nodes, {"x": [3]}, {"y": None}, [("a", c), ("b", c.copy())])
    out = optimize(model, ["dedup_initializers", "eliminate_dead"])
    assert [t.name for t in out.graph.initializer] == ["a"]
    assert [list(n.input) for n in out.graph.node] == [["x", "a"], ["s", "a"]]


def test_dead_nodes_and_unused_initializers_removed():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Add", ["x", "c"], ["dead"]),
             helper.make_node("Neg", ["dead"], ["dead2"])]
    model = make_model(nodes, {"x": [3]}, {"y": None}, [("c", weight(3)), ("orphan", weight(5))])
    out = optimize(model, ["eliminate_dead"])
    assert ops(out) == {"Relu": 1}
    assert list(out.graph.initializer) == []


# --- opset normalisation ------------------------------------------------------------------------------------

def test_opset_upgraded_to_minimum_and_to_requested():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": [2]}, {"y": None}, opset=11)
    assert optimize(model, ["normalize_opset"]).opset_import[0].version == 13
    assert optimize(model, ["normalize_opset"], opset=18).opset_import[0].version == 18


def test_opset_conversion_failure_names_pass_and_opsets():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": [2]}, {"y": None}, opset=17)
    with pytest.raises(EdgecError) as e:
        optimize(model, ["normalize_opset"], opset=99, model_path="m.onnx")
    assert str(e.value).startswith("m.onnx: pass 'normalize_opset' cannot convert the model from opset 17 to 99 (")
    assert str(e.value).endswith("); pick another --opset or re-export at 99")


# --- MatMul + Add -> Gemm -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bias_shape", [[5], [1, 5], [4, 1]])
def test_matmul_add_becomes_gemm_for_either_operand_order(bias_shape):
    for order in (["p", "c"], ["c", "p"]):
        nodes = [helper.make_node("MatMul", ["x", "W"], ["p"]), helper.make_node("Add", order, ["y"])]
        model = make_model(nodes, {"x": [4, 3]}, {"y": None}, [("W", weight(3, 5)), ("c", weight(*bias_shape))])
        out = optimize(model)
        assert ops(out) == {"Gemm": 1}
        assert_same_outputs(model, out)


def test_matmul_add_stays_when_bias_widens_or_rank_is_three():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["p"]), helper.make_node("Add", ["p", "c"], ["y"])]
    widening = make_model(nodes, {"x": [4, 3]}, {"y": None}, [("W", weight(3, 5)), ("c", weight(2, 4, 5))])
    batched = make_model(nodes, {"x": [2, 4, 3]}, {"y": None}, [("W", weight(3, 5)), ("c", weight(5))])
    for model in (widening, batched):
        out = optimize(model)
        assert ops(out) == {"Add": 1, "MatMul": 1}
        assert_same_outputs(model, out)


def test_input_model_is_never_modified():
    """Identity elimination renames the initializer to the graph output's name, in edgec's copy only."""
    nodes = [helper.make_node("Identity", ["c"], ["y"]), helper.make_node("Add", ["x", "c"], ["z"])]
    model = make_model(nodes, {"x": [3]}, {"y": None, "z": None}, [("c", weight(3))])
    snapshot = model.SerializeToString()
    out = optimize(model)
    assert model.SerializeToString() == snapshot
    assert ops(out) == {"Add": 1}
    assert_same_outputs(model, out)


def test_reshape_shape_computed_at_run_time_becomes_constant():
    """x.view(x.shape[0], x.shape[1], -1) as exported: Shape -> Slice -> Concat feeds the Reshape."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "two"], ["head"]),
             helper.make_node("Concat", ["head", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    inits = [("zero", np.array([0], np.int64)), ("two", np.array([2], np.int64)),
             ("minus_one", np.array([-1], np.int64))]
    model = make_model(nodes, {"x": ["N", 7, 8, 8]}, {"y": None}, inits)
    out = optimize(model)
    assert ops(out) == {"Relu": 1, "Reshape": 1}
    shape = next(t for t in out.graph.initializer if t.name == out.graph.node[0].input[1])
    assert numpy_helper.to_array(shape).tolist() == [-1, 7, 64]
    assert_same_outputs(model, out)


# --- slim (onnxslim) ----------------------------------------------------------------------------------------

def test_slim_reinfers_shapes_onnxslim_annotates_wrongly():
    """An uneven Split (7 -> 2, 2, 2, 1): onnxslim's own shape inference wrote [1] for the first output,
    and ONNX's strict inference then refused the model (ONNX node test test_split_1d_uneven_split_opset18)."""
    model = make_model([helper.make_node("Split", ["x"], ["a", "b", "c", "d"], axis=0, num_outputs=4),
                        helper.make_node("Relu", ["a"], ["y"])],
                       {"x": [7]}, {"y": [2], "b": [2], "c": [2], "d": [1]}, opset=18)
    out = optimize(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in out.graph.output}
    assert shapes == {"y": [2], "b": [2], "c": [2], "d": [1]}
    assert_same_outputs(model, out)


def test_slim_keeps_the_model_and_says_why_when_onnxslim_fails(monkeypatch):
    import onnxslim

    def broken(*args, **kwargs):
        raise ValueError("list.remove(x): x not in list")

    monkeypatch.setattr(onnxslim, "slim", broken)
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": [2]}, {"y": [2]})
    ctx = PassContext()
    out = get_pass("slim")(model, ctx)
    assert out is model
    assert ctx.notes == ["slim skipped: onnxslim failed (ValueError: list.remove(x): x not in list)"]
