"""bf16 on the TVM CPU backend (`--precision bf16`): conv2d/matmul with bf16 operands, fp32 accumulation.

Numerics: the compiled model must match ONNX Runtime running the same graph with each converted op's
operands rounded to bf16 (weights in numpy, activations by a Cast pair) in fp32, to fp32 summation-order
differences, and differ from the fp32 graph by bf16's rounding. That holds on every host: `--target cpu`
runs `vdpbf16ps` where the host has AVX512_BF16 and TVM's widening to fp32 elsewhere. Tests that inspect
generated code name their target (x86-64-avx512-bf16 and the two host classes), whatever the host is.
"""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import runtime
from edgec.backends.tvm.pipelines import cpu, tir
from edgec.compiler import compile_model
from edgec.targets import resolve_target
from tests.conftest import CODEGEN_TARGETS, needs_host_features

tvm = pytest.importorskip("tvm")

RNG = np.random.default_rng(11)
SHAPE = (1, 3, 14, 14)
CONVERTED = ("w2", "wp", "wg", "wm")  # the ops after the first layer whose weights become bf16


def _net() -> onnx.ModelProto:
    """conv3x3 3->16 (the first layer: stays fp32), ReLU, BatchNormalization (imported as a tuple and TupleGetItem,
    which the first-layer analysis must see through), conv3x3 16->24 unpadded (24 channels: the 256-bit form; a
    padded one would be a Winograd conv, whose bf16 operands are transformed tiles: test_tvm_winograd), ReLU,
    depthwise 3x3 (stays fp32), 1x1 conv 24->32, global average pool, Gemm (transB) 32->16, ReLU, MatMul 16->250
    (250 outputs: padded to 256 columns and sliced back)."""
    shapes = {"w1": (16, 3, 3, 3), "w2": (24, 16, 3, 3), "wd": (24, 1, 3, 3), "wp": (32, 24, 1, 1), "wg": (16, 32),
              "wm": (16, 250)}
    weights = [numpy_helper.from_array((RNG.standard_normal(s) * 0.3).astype(np.float32), n) for n, s in shapes.items()]
    weights += [numpy_helper.from_array(v.astype(np.float32), n) for n, v in (
        ("bn_scale", RNG.uniform(0.5, 1.5, 16)), ("bn_bias", RNG.standard_normal(16) * 0.1),
        ("bn_mean", RNG.standard_normal(16) * 0.1), ("bn_var", RNG.uniform(0.5, 1.5, 16)))]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("BatchNormalization", ["r1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n1"]),
             helper.make_node("Conv", ["n1", "w2"], ["c2"]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "wd"], ["d"], pads=[1, 1, 1, 1], group=24),
             helper.make_node("Conv", ["d", "wp"], ["p"]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wg"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("MatMul", ["hr", "wm"], ["y"])]
    graph = helper.make_graph(nodes, "bf16net", [helper.make_tensor_value_info("input", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 250])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _bf16_reference(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with the converted ops' weights rounded to bf16 values and their activations rounded by a
    Cast(bfloat16) -> Cast(float) pair: what `--precision bf16` computes, in fp32 arithmetic."""
    ref = onnx.ModelProto.FromString(model.SerializeToString())
    for init in ref.graph.initializer:
        if init.name in CONVERTED:
            rounded = numpy_helper.to_array(init).astype(ml_dtypes.bfloat16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    nodes = []
    for node in ref.graph.node:
        if len(node.input) > 1 and node.input[1] in CONVERTED:
            x = node.input[0]
            nodes += [helper.make_node("Cast", [x], [x + "_bf16"], to=TensorProto.BFLOAT16),
                      helper.make_node("Cast", [x + "_bf16"], [x + "_rounded"], to=TensorProto.FLOAT)]
            node.input[0] = x + "_rounded"
        nodes.append(node)
    del ref.graph.node[:]
    ref.graph.node.extend(nodes)
    return ref


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _relax_heavy_ops(model: onnx.ModelProto) -> list[tuple[str, str, str, tuple]]:
    """(op, activation dtype, weight dtype, weight shape) of each conv2d/matmul after the bf16 rewrite, in graph
    order."""
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from edgec.backends.tvm.rewrites.bfloat16 import bfloat16_operands

    mod = bfloat16_operands(from_onnx(model, keep_params_in_input=False))
    ops = []

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name in (
                "relax.nn.conv2d", "relax.matmul"):
            ops.append((expr.op.name.split(".")[-1], str(expr.args[0].ty.dtype), str(expr.args[1].ty.dtype),
                        tuple(int(d) for d in expr.args[1].ty.shape.values)))

    relax.analysis.post_order_visit(mod["main"], visit)
    return ops


def test_heavy_ops_after_the_first_layer_take_bf16_operands():
    """The first conv (reads the graph input) and the depthwise conv stay fp32; the others get bf16 operands."""
    ops = _relax_heavy_ops(_net())
    assert [op[:3] for op in ops] == [
        ("conv2d", "float32", "float32"), ("conv2d", "bfloat16", "bfloat16"), ("conv2d", "float32", "float32"),
        ("conv2d", "bfloat16", "bfloat16"), ("matmul", "bfloat16", "bfloat16"), ("matmul", "bfloat16", "bfloat16")]
    assert ops[-1][3] == (16, 256)  # 250 columns padded to whole vectors


def test_odd_input_channels_are_padded_to_bf16_pairs():
    """A 3-channel conv after the first layer reads a zero 4th channel (the dot products take bf16 pairs)."""
    w = [numpy_helper.from_array((RNG.standard_normal(s) * 0.3).astype(np.float32), n)
         for n, s in (("w1", (3, 3, 1, 1)), ("w2", (8, 3, 3, 3)))]
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w1"], ["a"]),
                               helper.make_node("Conv", ["a", "w2"], ["y"], pads=[1, 1, 1, 1])], "odd",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 14, 14])], w)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert _relax_heavy_ops(model)[1] == ("conv2d", "bfloat16", "bfloat16", (8, 4, 3, 3))


@pytest.mark.parametrize("target_name", ["x86-64-avx512-bf16", *CODEGEN_TARGETS])
def test_bf16_kernels_use_the_targets_dot_product(target_name):
    """Compile only (any host): vdpbf16ps on zmm (16-channel multiples) and ymm (24 channels) for an AVX512_BF16
    target; the other x86 targets compile the same graph with bf16 widened to fp32 (no vdpbf16ps)."""
    from tvm.relax.frontend.onnx import from_onnx

    tvm_target = tvm.target.Target(resolve_target(target_name).tvm)
    mod = from_onnx(_net(), keep_params_in_input=False)
    executable = tvm.compile(mod, target=tvm_target, relax_pipeline=cpu.pipeline(tvm_target, precision="bf16"),
                             tir_pipeline=tir.tir_pipeline("llvm"))
    asm = "\n".join(m.inspect_source("asm") for m in executable.mod.imports if m.kind == "llvm")
    dots = re.findall(r"vdpbf16ps\s+[^\n]*", asm)
    if target_name == "x86-64-avx512-bf16":
        assert any("zmm" in d for d in dots) and any("ymm" in d for d in dots)
    else:
        assert not dots


def test_bf16_matches_onnx_runtime_on_bf16_rounded_operands(tmp_path):
    """Runs on the host (`--target cpu`): vdpbf16ps with AVX512_BF16, widened bf16 elsewhere. Within fp32
    summation-order error of the bf16-rounded reference, and visibly not the fp32 result."""
    model = _net()
    path = tmp_path / "net.onnx"
    onnx.save(model, path)
    result = compile_model(path, "cpu", tmp_path / "net.edgec", backend="tvm", precision="bf16")
    assert result.manifest["precision"] == "bf16"
    module = runtime.load(result.path)
    for _ in range(3):
        x = RNG.standard_normal(SHAPE).astype(np.float32)
        got, ref, full = module(x)[0], _ort(_bf16_reference(model), x), _ort(model, x)
        scale = np.abs(full).max()
        assert np.abs(got - ref).max() <= 1e-5 * scale
        assert np.abs(got - full).max() > 1e-4 * scale  # bf16 rounding shows


@needs_host_features("avx512_bf16")
def test_host_target_runs_vdpbf16ps(tmp_path):
    """On an AVX512_BF16 host `--target cpu` takes the dot-product kernels (the numerics test then ran them)."""
    from tvm.relax.frontend.onnx import from_onnx

    tvm_target = tvm.target.Target(resolve_target("cpu").tvm)
    executable = tvm.compile(from_onnx(_net(), keep_params_in_input=False), target=tvm_target,
                             relax_pipeline=cpu.pipeline(tvm_target, precision="bf16"),
                             tir_pipeline=tir.tir_pipeline("llvm"))
    assert "vdpbf16ps" in "\n".join(m.inspect_source("asm") for m in executable.mod.imports if m.kind == "llvm")


def test_bf16_is_a_cpu_precision():
    from edgec.backends import get_backend
    from edgec.backends.base import CompileOptions
    from edgec.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="backend 'tvm' compiles bf16 for CPU targets only; for target "
                                               "'cuda-sm_90' use --precision fp16"):
        get_backend("tvm").check(resolve_target("cuda-sm_90"), CompileOptions(precision="bf16"))
    with pytest.raises(UnsupportedError, match=r"backend 'ort' does not support precision 'bf16' yet \(it supports "
                                               r"fp32, fp16, int8\)"):
        get_backend("ort").check(resolve_target("cpu"), CompileOptions(precision="bf16"))
