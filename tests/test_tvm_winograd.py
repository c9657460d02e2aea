"""Winograd 3x3 convs on the CPU (`rewrites.winograd`, `schedules.cpu.winograd`).

Graphs built with onnx.helper: ResNet-style blocks of 3x3 convs, run on the host against ONNX Runtime, and the
convs the rewrite must leave alone. The transforms' generated code is checked per named target
(compiled only, whatever the host is).
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.backends.base import CompileOptions
from edgec.backends.tvm import pipelines
from edgec.targets import resolve_target
from tests.conftest import CODEGEN_TARGETS

tvm = pytest.importorskip("tvm")

RNG = np.random.default_rng(11)
REL_TOL = 2e-5  # of the largest output: F(4x4, 3x3) measured 1.1e-6 to 1.8e-6 on 64-512 channel ResNet blocks


def _block(channels: int, height: int, width: int, batch: int = 1, out_channels: int | None = None,
           weight_input: bool = False, **conv) -> onnx.ModelProto:
    """conv(3x3 unless `kernel_shape` says) + bias -> ReLU -> conv(3x3) + bias -> add the input -> ReLU."""
    out_channels = out_channels or channels
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], **conv}
    k = conv["kernel_shape"][0]
    group = conv.get("group", 1)
    scale = 1 / np.sqrt(9 * channels)

    def weight(name, cout, cin, size):
        return numpy_helper.from_array((RNG.standard_normal((cout, cin, size, size)) * scale).astype(np.float32), name)

    inits = [weight("w2", channels, out_channels, 3),
             numpy_helper.from_array(RNG.standard_normal(out_channels).astype(np.float32) * 0.1, "b1"),
             numpy_helper.from_array(RNG.standard_normal(channels).astype(np.float32) * 0.1, "b2")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, height, width])]
    if weight_input:
        inputs.append(helper.make_tensor_value_info("w1", TensorProto.FLOAT, [out_channels, channels // group, k, k]))
    else:
        inits.append(weight("w1", out_channels, channels // group, k))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], **conv), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    if conv.get("strides", [1])[0] == 1 and conv.get("pads") == [1, 1, 1, 1] and k == 3:
        nodes += [helper.make_node("Add", ["c2", "x"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    else:
        nodes.append(helper.make_node("Relu", ["c2"], ["y"]))
    span = conv.get("dilations", [1])[0] * (k - 1) + 1
    out_hw = [(d + 2 * conv["pads"][0] - span) // conv.get("strides", [1])[0] + 1 for d in (height, width)]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, channels, *out_hw])
    graph = helper.make_graph(nodes, "block", inputs, [output], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _compile(model: onnx.ModelProto, target, precision: str = "fp32"):
    from tvm.relax.frontend.onnx import from_onnx

    return tvm.compile(from_onnx(model, keep_params_in_input=False), target=tvm.target.Target(target.tvm),
                       relax_pipeline=pipelines.relax_pipeline(target, CompileOptions(precision=precision)),
                       tir_pipeline=pipelines.tir_pipeline(target))


def _winograd_kernels(model: onnx.ModelProto, target, precision: str = "fp32") -> list[str]:
    """Names of the Winograd transform kernels edgec's CPU pipeline makes of `model`."""
    from tvm import tirx
    from tvm.relax.frontend.onnx import from_onnx

    seen = []

    @tvm.transform.module_pass(opt_level=0)
    def record(mod, _ctx):
        seen.extend(g.name_hint for g, f in mod.functions_items()
                    if isinstance(f, tirx.PrimFunc) and "winograd" in g.name_hint)
        return mod

    with tvm.transform.PassContext(opt_level=3):
        tvm.transform.Sequential([pipelines.relax_pipeline(target, CompileOptions(precision=precision)), record])(
            from_onnx(model, keep_params_in_input=False))
    return seen


CASES = {  # name -> (model, Winograd tile size m the rewrite picks: the largest giving 16 tiles)
    "16x16_m4": (_block(16, 16, 16), 4),
    "7x7_odd_m2": (_block(32, 7, 7), 2),  # 7 rows: the last tile reads padding, its extra outputs are dropped
    "8x8_m2": (_block(16, 8, 8), 2),  # 4 tiles of 4x4, too few: 16 of 2x2
    "12x20_batch2_24ch": (_block(24, 12, 20, batch=2), 4),  # 24 channels: half an AVX-512 vector
    "widening_16_to_32": (_block(16, 14, 14, out_channels=32), 4),
}


@pytest.mark.parametrize("name", list(CASES))
def test_winograd_matches_onnxruntime(name):
    from tvm import relax

    model, _ = CASES[name]
    host = resolve_target("cpu")
    assert _winograd_kernels(model, host), "the block's 3x3 convs were not rewritten"
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = RNG.standard_normal(shape).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    got = relax.VirtualMachine(_compile(model, host), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= REL_TOL * np.abs(expected).max()


@pytest.mark.parametrize("name", list(CASES))
def test_tile_size_is_the_largest_with_enough_tiles(name):
    from edgec.backends.tvm.rewrites.winograd import tile_size

    model, m = CASES[name]
    n, c, h, w = (d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    assert tile_size([n, h, w, c]) == m
    assert tile_size([n, h, w, c], "bfloat16") == 2  # bf16 operands: F(2x2, 3x3) only
    assert tile_size([1, 4, 4, c]) is None  # 4 tiles of 2x2 at most


DECLINED = {  # convs the rewrite leaves to the direct Gemm rule: only the second (3x3, stride 1) conv is rewritten
    "stride_2": _block(16, 16, 16, strides=[2, 2]),
    "dilation_2": _block(16, 16, 16, dilations=[2, 2], pads=[2, 2, 2, 2]),
    "grouped": _block(16, 16, 16, group=2),
    "5x5": _block(16, 16, 16, kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
    "1x1": _block(16, 16, 16, kernel_shape=[1, 1], pads=[0, 0, 0, 0]),
    "unpadded": _block(16, 16, 16, pads=[0, 0, 0, 0]),
    "weight_is_an_input": _block(16, 16, 16, weight_input=True),
}


@pytest.mark.parametrize("name", list(DECLINED))
def test_rewrite_declines_other_convs(name):
    kernels = _winograd_kernels(DECLINED[name], resolve_target("x86-64-avx2"))
    assert len([k for k in kernels if "winograd_input" in k]) == 1, kernels


@pytest.mark.parametrize("channels", [12, 20])  # under 16; not a multiple of 8
def test_rewrite_declines_channel_counts_the_transforms_do_not_vectorize(channels):
    assert _winograd_kernels(_block(channels, 16, 16), resolve_target("x86-64-avx2")) == []


@pytest.mark.parametrize("name", [*CODEGEN_TARGETS, "aarch64"])
def test_transforms_are_vectorized_with_tile_entries_folded(name):
    """Unrolled, each transform's selected tile entry folds to its sum: vector code with no `select` left (the
    default injective schedule evaluates the whole select chain per element)."""
    target = resolve_target(name)
    ir = "\n".join(m.inspect_source("ll") for m in _compile(CASES["16x16_m4"][0], target).mod.imports
                   if m.kind == "llvm")
    functions = re.split(r"\n(?=define )", ir)
    lanes = {"x86-64-avx2": 8, "x86-64-avx512": 16, "aarch64": 4}[name]
    checked = 0
    for i, function in enumerate(functions):
        if re.match(r"define [^@]*@winograd_input\w*_compute_\(", function):
            body = functions[i + 1]  # the parallel loop's body, right after the function that launches it
            assert "__tvm_parallel_lambda" in body.split("\n")[0]
            assert f"<{lanes} x float>" in body and " select " not in body
            checked += 1
    assert checked == 1


def test_bf16_winograd_rounds_transformed_tiles(tmp_path):
    """`--precision bf16`: the second conv (the first reads the graph input and stays fp32) is an F(2x2, 3x3)
    Winograd conv whose transformed tiles and weights are the bf16 operands. Runs on the host: within bf16 error
    of fp32 (ResNet-18's logits: 3.0e-3 of the largest, 2.6e-3 for direct bf16 convs), and visibly rounded."""
    from edgec import runtime
    from edgec.compiler import compile_model

    model = _block(16, 14, 14)
    assert len([k for k in _winograd_kernels(model, resolve_target("cpu"), "bf16") if "winograd_input" in k]) == 2
    onnx.save(model, tmp_path / "block.onnx")
    module = runtime.load(compile_model(tmp_path / "block.onnx", "cpu", tmp_path / "block.edgec", backend="tvm",
                                        precision="bf16").path)
    x = RNG.standard_normal((1, 16, 14, 14)).astype(np.float32)
    full = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    error = np.abs(module(x)[0] - full).max() / np.abs(full).max()
    assert 1e-4 < error < 1e-2


def test_bf16_winograd_products_use_vdpbf16ps():
    """Compile only (any host): on an AVX512_BF16 target the batched GEMM of bf16 tiles is a dot-product kernel."""
    executable = _compile(_block(16, 14, 14), resolve_target("x86-64-avx512-bf16"), "bf16")
    asm = "\n".join(m.inspect_source("asm") for m in executable.mod.imports if m.kind == "llvm")
    functions = re.split(r"\n(?=[A-Za-z_][\w.]*:)", asm)  # each with the parallel lambdas that follow it
    products = [f for f in functions if re.match(r"matmul\w*_compute_", f)]
    assert sorted("vdpbf16ps" in f for f in products) == [False, True]  # the first conv's (fp32), the second's


def test_no_winograd_keeps_convs_direct_and_the_artifact_smaller(tmp_path):
    """`edgec compile --no-winograd`: the same results from direct convs, in an artifact without the transformed
    weights (F(4x4) stores 36/9 of each 3x3 weight); the manifest says which."""
    from edgec import runtime
    from tests.conftest import run_edgec

    model = _block(64, 16, 16)
    onnx.save(model, tmp_path / "block.onnx")
    x = RNG.standard_normal((1, 64, 16, 16)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    sizes = {}
    for flags in ([], ["--no-winograd"]):
        out = tmp_path / f"block{len(flags)}.edgec"
        run_edgec("compile", tmp_path / "block.onnx", "--target", "cpu", *flags, "-o", out, check=True)
        module = runtime.load(out)
        assert module.manifest["backend_config"]["winograd"] is (not flags)
        assert np.abs(module(x)[0] - expected).max() <= REL_TOL * np.abs(expected).max()
        sizes[bool(flags)] = out.stat().st_size
    assert sizes[False] - sizes[True] > 2 * 64 * 64 * 9 * 4  # 3 of the 4 weight copies' bytes, in both convs
