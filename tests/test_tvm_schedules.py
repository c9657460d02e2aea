"""edgec's CPU pipeline and schedule rules: every kernel family matches ONNX Runtime within 1e-4.

Each graph is small, built with onnx.helper, compiled with `pipelines.relax_pipeline` for the
host CPU and run in TVM's VM; the rules must either schedule a kernel or decline, never change a
result. Tests of the schedules themselves compile for each named x86 target (`CODEGEN_TARGETS`),
whatever the host is.
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

RNG = np.random.default_rng(7)
ATOL = 1e-4


def _const(name: str, *shape: int, scale: float = 0.3) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def _model(nodes, inits, x_shape, y_shape) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv(cin, cout, k, stride=1, groups=1, act=None, residual=False, hw=10, batch=1):
    pad = k // 2
    out_hw = (hw + 2 * pad - k) // stride + 1
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[pad] * 4, strides=[stride] * 2, group=groups)]
    inits = [_const("w", cout, cin // groups, k, k), _const("b", cout)]
    last = "c"
    if residual:  # residual add needs matching shapes: a 1x1 shortcut of the input
        nodes.append(helper.make_node("Conv", ["x", "ws"], ["s"], strides=[stride] * 2))
        inits.append(_const("ws", cout, cin, 1, 1))
        nodes.append(helper.make_node("Add", [last, "s"], ["r"]))
        last = "r"
    if act == "relu":
        nodes.append(helper.make_node("Relu", [last], ["y"]))
    elif act == "relu6":
        inits += [numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(6.0), "hi")]
        nodes.append(helper.make_node("Clip", [last, "lo", "hi"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["y"]))
    return _model(nodes, inits, [batch, cin, hw, hw], [batch, cout, out_hw, out_hw])


def _gemm(batch, k, n):
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1), helper.make_node("Relu", ["g"], ["y"])]
    return _model(nodes, [_const("w", n, k), _const("b", n)], [batch, k], [batch, n])


def _pool(kind, c=12, hw=9):
    if kind == "max":
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        out = [1, c, 5, 5]
    elif kind == "avg":
        node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
        out = [1, c, 4, 4]
    else:
        node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
        out = [1, c, 1, 1]
    return _model([node], [], [1, c, hw, hw], out)


def _softmax_layernorm():
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-1),
             helper.make_node("Softmax", ["ln"], ["y"], axis=-1)]
    inits = [_const("g", 24), _const("b", 24)]
    return _model(nodes, inits, [3, 5, 24], [3, 5, 24])


def _rows_197():
    """LayerNorm, an additive mask and softmax over rows of 197 (12 vectors of 16 and a tail of 5)."""
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-1),
             helper.make_node("Add", ["ln", "mask"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["y"], axis=-1)]
    mask = np.where(np.arange(197) % 7 == 3, -1e4, 0).astype(np.float32)
    inits = [_const("g", 197), _const("b", 197), numpy_helper.from_array(mask, "mask")]
    return _model(nodes, inits, [2, 7, 197], [2, 7, 197])


def _elementwise():
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Sigmoid", ["m"], ["sg"]),
             helper.make_node("Transpose", ["sg"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("HardSwish", ["t"], ["y"])]
    return _model(nodes, [_const("s", 1, 6, 1, 1)], [2, 6, 5, 7], [2, 5, 7, 6])


def _matmul_activations():
    """Both operands are activations (no weight to pack): attention-style batched matmul."""
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "xt"], ["y"])]
    return _model(nodes, [], [2, 6, 16], [2, 6, 6])


def _attention(tokens: int = 13, head: int = 8):
    """ViT-style attention on a token count with no good divisor: softmax(Q K^T * scale) V with GELU'd values."""
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["ss"]),
             helper.make_node("Softmax", ["ss"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "x"], ["a"]),
             helper.make_node("Gelu", ["a"], ["y"], domain="")]
    inits = [_const("wq", head, head), _const("wk", head, head),
             numpy_helper.from_array(np.float32(head ** -0.5), "scale")]
    model = _model(nodes, inits, [2, tokens, head], [2, tokens, head])
    model.opset_import[0].version = 20  # Gelu
    return model


def _lm_head(rows: int = 4, k: int = 24, vocab: int = 1031):
    """A vocabulary projection whose width (a prime) no vector width divides."""
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_const("w", k, vocab)], [1, rows, k],
                  [1, rows, vocab])


def _nonlinear():
    """The functions fast_math replaces, over a range that reaches exp's clamp."""
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Sigmoid", ["m"], ["sg"]),
             helper.make_node("Erf", ["m"], ["er"]), helper.make_node("Tanh", ["m"], ["th"]),
             helper.make_node("Exp", ["m"], ["ex"]), helper.make_node("Mul", ["m", "sg"], ["silu"]),
             helper.make_node("Add", ["sg", "er"], ["t1"]), helper.make_node("Add", ["th", "silu"], ["t2"]),
             helper.make_node("Add", ["t1", "t2"], ["t"]),
             helper.make_node("Div", ["ex", "big"], ["exs"]), helper.make_node("Add", ["t", "exs"], ["u"]),
             helper.make_node("Pow", ["m", "three"], ["cube"]), helper.make_node("Pow", ["m", "two"], ["square"]),
             helper.make_node("Add", ["cube", "square"], ["pw"]), helper.make_node("Add", ["u", "pw"], ["y"])]
    inits = [numpy_helper.from_array(np.float32(12.0), "s"), numpy_helper.from_array(np.float32(1e30), "big"),
             numpy_helper.from_array(np.float32(3.0), "three"), numpy_helper.from_array(np.float32(2.0), "two")]
    return _model(nodes, inits, [4, 61], [4, 61])



def _variadic():
    """Sum/Max/Mean of three inputs next to a conv (NHWC), broadcasting a per-channel and a one-element input."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], pads=[1] * 4), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Sum", ["a", "b", "c"], ["s"]), helper.make_node("Max", ["a", "b", "d"], ["m"]),
             helper.make_node("Min", ["s", "m"], ["n"]), helper.make_node("Mean", ["s", "n", "a"], ["y"])]
    return _model(nodes, [_const("w", 8, 4, 3, 3), _const("c", 8, 1, 1), _const("d", 1)], [1, 4, 8, 8], [1, 8, 8, 8])

CASES = {
    "conv3x3_relu": _conv(16, 32, 3, act="relu"),
    "conv3x3_stride2_relu6": _conv(8, 16, 3, stride=2, act="relu6"),
    "conv1x1_residual_relu": _conv(16, 24, 1, residual=True, act="relu"),
    "conv7x7_stride2_rgb": _conv(3, 16, 7, stride=2, act="relu", hw=16),
    "conv_odd_channels": _conv(1, 6, 5, act="relu", hw=12),
    "conv_batch2": _conv(8, 16, 3, act="relu", batch=2),
    "depthwise3x3_relu6": _conv(16, 16, 3, groups=16, act="relu6"),
    "depthwise_stride2": _conv(24, 24, 3, stride=2, groups=24, act="relu"),
    "depthwise_mobilenet_s2_relu6": _conv(96, 96, 3, stride=2, groups=96, act="relu6", hw=14),
    "grouped_conv": _conv(8, 8, 3, groups=2, act="relu"),
    "dense_b1": _gemm(1, 64, 10),
    "dense_b8_odd": _gemm(8, 120, 84),
    "dense_wide": _gemm(2, 32, 1000),
    "maxpool": _pool("max"),
    "avgpool": _pool("avg"),
    "global_avgpool": _pool("global"),
    "softmax_layernorm": _softmax_layernorm(),
    "softmax_layernorm_rows_197": _rows_197(),
    "elementwise_chain": _elementwise(),
    "matmul_activations": _matmul_activations(),
    "attention_13_tokens": _attention(),
    "attention_197_tokens": _attention(197, 64),
    "lm_head_prime_vocab": _lm_head(),
    "nonlinear_fast_math": _nonlinear(),
    "variadic_sum_max_min_mean": _variadic(),
}


@pytest.fixture(scope="module")
def host():
    """This machine (`--target cpu`): for tests that run the compiled kernels."""
    return resolve_target("cpu")


@pytest.fixture(scope="module", params=CODEGEN_TARGETS)
def target(request):
    """A named x86 target whose schedules a test inspects (compiled only)."""
    return resolve_target(request.param)


def _compile(model: onnx.ModelProto, target, tir_pipeline: str | None = None):
    """`model` built as edgec builds it for `target` (its TIR lowering unless `tir_pipeline` names another)."""
    from tvm.relax.frontend.onnx import from_onnx

    return tvm.compile(from_onnx(model, keep_params_in_input=False), target=tvm.target.Target(target.tvm),
                       relax_pipeline=pipelines.relax_pipeline(target, CompileOptions()),
                       tir_pipeline=tir_pipeline or pipelines.tir_pipeline(target))


def _run_edgec(model: onnx.ModelProto, target, x: np.ndarray) -> np.ndarray:
    from tvm import relax

    vm = relax.VirtualMachine(_compile(model, target), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x))
    return out.numpy()


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_family_matches_onnxruntime(name, host):
    model = CASES[name]
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = RNG.standard_normal(shape).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    got = _run_edgec(model, host, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-4)


def _scheduled_kernels(model: onnx.ModelProto, target) -> dict:
    """Names of the module's PrimFuncs -> whether an edgec rule scheduled them."""
    from tvm import tirx
    from tvm.relax.frontend.onnx import from_onnx

    seen = {}

    @tvm.transform.module_pass(opt_level=0)
    def record(mod, _ctx):
        for gvar, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc):
                seen[gvar.name_hint] = bool(func.attrs and func.attrs.get("tirx.is_scheduled", False))
        return mod

    pipeline = pipelines.relax_pipeline(target, CompileOptions())
    mod = from_onnx(model, keep_params_in_input=False)
    with tvm.transform.PassContext(opt_level=3):
        tvm.transform.Sequential([pipeline, record])(mod)
    return seen


def test_conv_and_dense_kernels_are_scheduled(target):
    """The heavy kernels of a small CNN are taken by a rule, epilogues fused into them."""
    seen = _scheduled_kernels(CASES["conv1x1_residual_relu"], target)
    conv = [name for name in seen if "conv2d" in name]
    assert conv and all(seen[name] for name in conv), seen
    assert any("add" in name and "relu" in name for name in conv), f"epilogue not fused: {conv}"
    seen = _scheduled_kernels(CASES["dense_b8_odd"], target)
    assert any(ok for name, ok in seen.items() if "matmul" in name), seen


def test_row_kernels_reduce_into_vectors(target):
    """Softmax and LayerNorm over 197 become the row_reductions kernels, which RowReduction schedules: running
    values in a vector loop under the chunk loop, elementwise loops vectorized with their 5-element tail apart."""
    from tvm import te

    from edgec.backends.tvm.rewrites import row_reductions
    from edgec.backends.tvm.schedules.cpu import RowReduction

    seen = _scheduled_kernels(CASES["softmax_layernorm_rows_197"], target)
    rows = [name for name in seen if "softmax" in name or "layer_norm" in name]
    assert len(rows) == 2 and all(seen[name] for name in rows), seen
    assert not any("fast_softmax" in name for name in seen), seen  # TOPI's kernel replaced
    x = te.placeholder((2, 7, 197), name="x")
    sch = RowReduction().apply(te.create_prim_func([x, row_reductions.softmax(x)]), tvm.target.Target(target.tvm),
                               False)
    assert sch is not None
    text = sch.mod["main"].script()
    for block in ("row_max_partial", "row_sum_partial"):
        assert re.search(rf"for \w+ in T.vectorized\(16\):\n\s+with T.sblock\(\"{block}_update", text), block
    assert re.search(r"for \w+ in range\(192, 197\)", text), "no tail loop"


def test_gemm_schedule_is_parallel_and_vectorized(target):
    """The Gemm rule tiles a conv into a parallel outer loop and a vectorized register tile."""
    from tvm import te, topi

    from edgec.backends.tvm.schedules.cpu import Gemm

    data = te.placeholder((1, 14, 14, 64), name="data")
    weight = te.placeholder((3, 3, 64, 64), name="weight")
    conv = topi.nn.conv2d_nhwc(data, weight, 1, 1, 1)
    relu = topi.nn.relu(conv)
    func = te.create_prim_func([data, weight, relu])
    sch = Gemm().apply(func, tvm.target.Target(target.tvm), False)
    assert sch is not None
    text = sch.mod["main"].script()
    assert "T.parallel" in text and "T.vectorized" in text and "conv2d_nhwc_global" in text  # the register tile


def _dynamic_batch_conv() -> onnx.ModelProto:
    model = _conv(8, 16, 3, act="relu", residual=True)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return model


def test_dynamic_batch_kernels_are_scheduled(target):
    """A symbolic batch (how edgec exports) sits outside the micro-kernel: the rules still take every
    conv/matmul (unscheduled, ResNet-18 at 64 px ran 33 ms instead of 0.64)."""
    seen = _scheduled_kernels(_dynamic_batch_conv(), target)
    heavy = [name for name in seen if "conv2d" in name]
    assert heavy and all(seen[name] for name in heavy), seen


def test_dynamic_batch_kernels_are_correct_for_any_batch(host):
    model = _dynamic_batch_conv()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = RNG.standard_normal((batch, 8, 10, 10)).astype(np.float32)
        np.testing.assert_allclose(_run_edgec(model, host, x), session.run(None, {"x": x})[0], atol=ATOL, rtol=1e-4)


def test_window_kernel_reads_padding_in_place(target):
    """A depthwise conv (each channel its own 3x3 window) reads its padding inline, window unrolled."""
    from tvm import te, topi

    from edgec.backends.tvm.schedules.cpu import Gemm

    data = te.placeholder((1, 14, 14, 32), name="data")
    weight = te.placeholder((3, 3, 1, 32), name="weight")
    padded = topi.nn.pad(data, [0, 1, 1, 0], [0, 1, 1, 0])
    kh, kw = te.reduce_axis((0, 3), "kh"), te.reduce_axis((0, 3), "kw")
    dw = te.compute((1, 14, 14, 32), lambda n, h, w, c: te.sum(
        padded[n, h + kh, w + kw, c] * weight[kh, kw, 0, c], axis=[kh, kw]), name="dw")
    sch = Gemm().apply(te.create_prim_func([data, weight, topi.nn.relu(dw)]), tvm.target.Target(target.tvm), False)
    assert sch is not None
    text = sch.mod["main"].script()
    assert 'T.sblock("PadInput")' not in text and "if_then_else" in text, "padding not inlined"
    assert text.count("T.unroll(3)") == 2 and "T.parallel" in text and "T.vectorized" in text


def test_copy_producer_is_inlined_and_dense_padding_is_not(target):
    """A 1x1 conv's zero-width pad (a plain copy) disappears; a 3x3 conv's padding stays its own nest."""
    from tvm import te, topi

    from edgec.backends.tvm.schedules.cpu import Gemm

    tgt = tvm.target.Target(target.tvm)
    data = te.placeholder((1, 14, 14, 32), name="data")
    for k, pad, kept in [(1, 0, False), (3, 1, True)]:
        weight = te.placeholder((k, k, 32, 64), name="weight")
        func = te.create_prim_func([data, weight, topi.nn.conv2d_nhwc(data, weight, 1, pad, 1)])
        text = Gemm().apply(func, tgt, False).mod["main"].script()
        assert ('T.sblock("pad_temp")' in text) == kept, text


def test_injective_vectorizes_four_vectors_per_iteration(target):
    """Elementwise loops take 4 vectors per iteration: one 8 x float -> int32 vector per iteration ran 3.3x
    slower (LLVM shuffled the unrolled loop: the zoo ResNet-18's int8 input packing, 3.5 -> 1.1 us)."""
    from tvm import te

    from edgec.backends.tvm.schedules.cpu import Injective
    from edgec.backends.tvm.schedules.target_facts import vector_lanes

    tgt = tvm.target.Target(target.tvm)
    x = te.placeholder((4, 512), name="x")
    y = te.compute(x.shape, lambda i, j: te.round(x[i, j] * 255.0).astype("int32"), name="y")
    text = Injective().apply(te.create_prim_func([x, y]), tgt, False).mod["main"].script()
    assert f"T.vectorized({4 * vector_lanes(tgt, 32)})" in text, text


@pytest.mark.parametrize("dtype, parallel", [("float32", True), ("uint8", False)])
def test_small_8bit_pool_runs_on_one_thread(target, dtype, parallel):
    """The Gemm rule counts work in 32-bit elements: the zoo ResNet-18's stem max pool (32x32x16 -> 16x16x16,
    3x3 window) is parallel in float, on one thread in uint8 (0.5 us there, 1.1-1.4 us forked)."""
    from tvm import te, topi

    from edgec.backends.tvm.schedules.cpu import Gemm

    data = te.placeholder((1, 32, 32, 16), dtype=dtype, name="data")
    pool = topi.nn.pool2d(data, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), "max", layout="NHWC")
    sch = Gemm().apply(te.create_prim_func([data, pool]), tvm.target.Target(target.tvm), False)
    assert sch is not None
    assert ("T.parallel" in sch.mod["main"].script()) == parallel


def test_rules_decline_what_they_do_not_match(target):
    """Gemm declines a softmax (two reductions); Injective declines any reduction."""
    from tvm import te, topi

    from edgec.backends.tvm.schedules.cpu import Gemm, Injective

    x = te.placeholder((4, 32), name="x")
    softmax = te.create_prim_func([x, topi.nn.softmax(x)])
    tgt = tvm.target.Target(target.tvm)
    assert Gemm().apply(softmax, tgt, False) is None
    assert Injective().apply(softmax, tgt, False) is None


def test_lift_clip_turns_clip_kernels_into_relax_ops():
    from tvm.relax.frontend.onnx import from_onnx

    from edgec.backends.tvm.rewrites.lift_clip import lift_clip

    mod = lift_clip(from_onnx(CASES["depthwise3x3_relu6"], keep_params_in_input=False))
    text = mod["main"].script()
    assert "R.maximum" in text and "R.minimum" in text and "call_tir" not in text


def test_variadic_ops_become_binary_chains():
    """TVM's importer stacks Sum/Max/Min/Mean inputs on a new axis, which ConvertLayout cannot follow next to an
    NHWC conv ("Invalid SLayout"); the rewrite leaves binary ops and no stack."""
    from tvm.relax.frontend.onnx import from_onnx

    from edgec.backends.tvm.rewrites.pairwise_variadic import pairwise_variadic

    imported = from_onnx(CASES["variadic_sum_max_min_mean"], keep_params_in_input=False)["main"].script()
    assert imported.count("R.stack") == 4
    text = pairwise_variadic(from_onnx(CASES["variadic_sum_max_min_mean"], keep_params_in_input=False))["main"].script()
    assert "R.stack" not in text and "R.broadcast_to" not in text
    assert text.count("R.add") == 4 and text.count("R.maximum") == 2 and text.count("R.minimum") == 1
    assert text.count("R.divide") == 1


@pytest.mark.parametrize("mcpu, triple, bits", [("haswell", "x86_64-linux-gnu", 256),
                                                ("znver3", "x86_64-linux-gnu", 256),
                                                ("cascadelake", "x86_64-linux-gnu", 512),
                                                ("cortex-a72", "aarch64-linux-gnu", 128)])
def test_vector_width_is_read_from_the_target(mcpu, triple, bits):
    from edgec.backends.tvm.schedules.target_facts import vector_bits, vector_registers

    tgt = tvm.target.Target({"kind": "llvm", "mtriple": triple, "mcpu": mcpu})
    assert vector_bits(tgt) == bits
    assert vector_registers(tgt) == (16 if bits == 256 else 32)


def test_choose_tile_keeps_accumulators_in_registers():
    from edgec.backends.tvm.schedules.cpu.gemm import choose_tile, live_registers

    for n_vec, n_reg, rows in [(64, 56, 576), (512, 7, 4608), (576, 14, 96), (1000, 1, 512), (6, 24, 25)]:
        ob, rb = choose_tile(n_vec, n_reg, lanes=8, registers=12, panel_rows=rows, dtype_bytes=4, live_limit=16)
        assert n_vec % ob == 0 and n_reg % rb == 0
        assert rb * -(-ob // 8) <= 12 and live_registers(-(-ob // 8), rb) <= 16
    # a 3x3x512 weight panel wider than 8 would not fit in L2: one vector wide, reused by 7 pixels (7 x 2 would
    # take 14 of AVX2's 12 accumulator registers)
    assert choose_tile(512, 7, 8, 12, 4608, 4, live_limit=16) == (8, 7)


def test_avx512_tiles_do_not_spill():
    """A 7 x 4 tile keeps 33 registers live (28 accumulators, 4 weight vectors, a broadcast): LLVM spilled two
    accumulators per reduction step. With x86's 32 registers as the limit, ResNet's 56- and 112-wide convs take
    8 x 2 tiles, its 28-wide ones 4 x 4, ViT's 197-row dense layers pad to 198 rows for 6 x 4."""
    from edgec.backends.tvm.schedules.cpu.gemm import PANEL_BYTES, choose_tile, live_registers, padding, spill_limit

    avx512 = dict(lanes=16, registers=28, dtype_bytes=4, panel=2 * PANEL_BYTES)
    assert live_registers(4, 7) == 33 and live_registers(1, 7) == 8 and live_registers(8, 1) == 9
    assert choose_tile(64, 56, panel_rows=576, **avx512) == (64, 7)  # without a limit: the spilling tile
    assert choose_tile(64, 56, panel_rows=576, live_limit=32, **avx512) == (32, 8)
    assert choose_tile(64, 112, panel_rows=147, live_limit=32, **avx512) == (32, 8)  # the 7x7 stem over RGB
    assert choose_tile(128, 28, panel_rows=1152, live_limit=32, **avx512) == (64, 4)
    assert padding(192, 197, panel_rows=768, live_limit=32, **avx512) == (1, 6)
    assert choose_tile(192, 198, panel_rows=768, live_limit=32, **avx512) == (64, 6)
    limits = {name: spill_limit(tvm.target.Target(resolve_target(name).tvm))
              for name in ("x86-64-avx512", "x86-64-avx2", "aarch64")}
    assert limits == {"x86-64-avx512": 32, "x86-64-avx2": 16, "aarch64": None}


def test_three_vector_tiles_only_where_asked():
    """Three vectors are a tile candidate only with `three_vectors` (a dense kernel's 24 channels); then on AVX-512
    8 rows x 3 vectors (24 accumulators + 3 weights + 1 broadcast = 28 live of 32), on AVX2 4 x 3 (16 of 16)."""
    from edgec.backends.tvm.schedules.cpu.gemm import choose_tile, live_registers

    assert choose_tile(24, 56, 8, 28, 144, 4, 512 * 1024, 32) == (8, 8)
    assert choose_tile(24, 56, 8, 28, 144, 4, 512 * 1024, 32, three_vectors=True) == (24, 8)
    assert live_registers(3, 8) == 28
    assert choose_tile(24, 56, 8, 12, 144, 4, 256 * 1024, 16, three_vectors=True) == (24, 4)
    assert live_registers(3, 4) == 16


def test_tiles_have_as_many_rows_as_weight_vectors():
    """A 1x1 conv over a 14-wide map (ResNet-50's 256 -> 1024) takes 7 rows x 2 vectors, not 2 x 8, whose 16
    accumulators load 8 weight vectors per 16 FMAs from the panel (20-32% slower); a 28-wide map keeps its 4 x 4
    and a starved one-row tile (a classifier on NEON) its widest vector block."""
    from edgec.backends.tvm.schedules.cpu.gemm import choose_tile

    assert choose_tile(1024, 14, 16, 28, 256, 4, 512 * 1024, 32) == (32, 7)
    assert choose_tile(128, 28, 16, 28, 1152, 4, 512 * 1024, 32) == (64, 4)
    assert choose_tile(1000, 1, 4, 28, 512, 4, 256 * 1024, None) == (8, 1)


def test_starved_tiles_take_a_wider_panel():
    """ResNet's 7x7 maps over 512 channels: a 512 KiB panel allows 16 columns, 7 accumulators (fewer than the 8
    that FMA latency x 2 pipes needs); the whole L2 allows 7 x 32, as many rows, 14 accumulators. AVX2 has no
    accumulator registers for 7 x 2 and keeps 7 x 1 rather than trade rows (weight reuse) for width."""
    from edgec.backends.tvm.schedules.cpu.gemm import PANEL_BYTES, choose_tile

    assert choose_tile(512, 7, 16, 28, 4608, 4, 2 * PANEL_BYTES, live_limit=32) == (32, 7)
    assert choose_tile(256, 14, 8, 12, 2304, 4, PANEL_BYTES, live_limit=16) == (8, 7)  # 2 x 32 would fit 512 KiB


def test_padding_tiles_extents_without_divisors():
    """197 tokens and a 50257-word vocabulary pad to whole vectors (else the tile is scalar); 197 rows pad to a
    6-row tile; extents that tile as they are, and 56 pixel columns (4 x 16 beat a padded 3 x 32), do not pad."""
    from edgec.backends.tvm.schedules.cpu.gemm import padding

    avx2 = dict(lanes=8, registers=12, panel_rows=64, dtype_bytes=4)
    assert padding(197, 197, **avx2) == (16, 6)  # attention Q K^T: 208 x 198, 5.6% more work
    assert padding(50257, 64, **dict(avx2, panel_rows=768)) == (32, 6)  # GPT-2's LM head: 50272 x 66, 6 x 16 tiles
    assert padding(192, 197, **dict(avx2, panel_rows=768)) == (1, 6)  # ViT's dense layers
    assert padding(64, 197, **dict(avx2, panel_rows=197)) == (1, 1)  # A V: 1 x 64 already holds 8 accumulators
    assert padding(256, 56, **avx2) == (1, 1)
    assert padding(64, 56, **avx2) == (1, 1)
    assert padding(6, 24, **avx2) == (1, 1)  # narrower than a vector: nothing to pad to
    avx512 = dict(lanes=16, registers=28, panel_rows=64, dtype_bytes=4)
    assert padding(197, 197, **avx512)[0] == 16  # one 512-bit vector: 208 columns again
    # two-vector tiles hold 16 of AVX-512's 28 accumulators: rows pad for a wider one (7 x 64 on 203 rows)
    assert padding(192, 197, **dict(avx512, panel_rows=768)) == (1, 7)
    assert padding(256, 56, **avx512) == (1, 1)  # 7 x 64 already


def test_avx512_weight_panels_are_twice_as_large():
    """AVX-512 cores have 1 MiB of L2 or more: a 3x3 conv over 256 channels streams a 7 x 32 tile's panel from it."""
    from edgec.backends.tvm.schedules.cpu.gemm import PANEL_BYTES, choose_tile, panel_bytes

    panels = {name: panel_bytes(tvm.target.Target(resolve_target(name).tvm))
              for name in ("x86-64-avx512", "x86-64-avx2", "aarch64")}
    assert panels == {"x86-64-avx512": 2 * PANEL_BYTES, "x86-64-avx2": PANEL_BYTES, "aarch64": PANEL_BYTES}
    assert choose_tile(256, 14, 16, 28, 3 * 3 * 256, 4, 2 * PANEL_BYTES) == (32, 7)
    # a 14 x 14 map over 512 input channels: 7 x 64 takes 1.2 MiB, 7 x 32 needs the AVX-512 panel
    assert choose_tile(256, 14, 16, 28, 3 * 3 * 512, 4, 2 * PANEL_BYTES) == (32, 7)
    assert choose_tile(256, 14, 16, 28, 3 * 3 * 512, 4, PANEL_BYTES) == (16, 7)


def test_channels_half_a_512_bit_vector_take_256_bit_vectors(target):
    """24 output channels (MobileNetV2's projections) are 3 AVX2 vectors; on AVX-512 three 256-bit ones, not
    1.5 512-bit ones (13 MAC/ns: LLVM splits the 24-lane type), and all three in one tile (AVX-512 8 x 3, AVX2
    4 x 3) that reads each input row once (three 8 x 1 tiles read the input three times: 1.27 -> 0.81 ms on
    AVX-512 at MobileNetV2's batch 8, 3.27 -> 1.54 ms for AVX2 code)."""
    from tvm import te

    from edgec.backends.tvm.schedules.cpu import Gemm
    from edgec.backends.tvm.schedules.cpu.gemm import tile_lanes

    assert (tile_lanes(24, 16, 32), tile_lanes(48, 16, 32), tile_lanes(24, 8, 32), tile_lanes(20, 16, 32)) == \
        (8, 16, 8, 16)
    x = te.placeholder((3136, 144), name="x")
    w = te.placeholder((144, 24), name="w")
    k = te.reduce_axis((0, 144), "k")
    y = te.compute((3136, 24), lambda i, j: te.sum(x[i, k] * w[k, j], axis=k), name="y")
    func = te.create_prim_func([x, w, y]).with_attr("layout_free_buffers", [1])
    sch = Gemm().apply(func, tvm.target.Target(target.tvm), False)
    assert sch is not None
    script = sch.mod["main"].script()
    widths = {int(n) for n in re.findall(r"T.vectorized\((\d+)\)", script)}
    assert widths == {8}, widths
    assert "T.sblock_alloc_buffer((1, 144, 24))" in script  # one panel of all 24 channels
    rows = 8 if target.name == "x86-64-avx512" else 4  # 24 or 12 accumulators
    assert re.search(rf"T.unroll\({rows}\):\s+for \w+ in T.unroll\(3\):\s+for \w+ in T.vectorized\(8\)", script)


def test_register_tiles_make_no_workspace_calls(target):
    """A tile's accumulators stay a stack buffer (LLVM keeps it in registers): no TVMBackendAllocWorkspace and
    FreeWorkspace call per tile, which TVM's own lowering makes for buffers of 1 KiB or more (AVX-512's 8 x 2
    tile: 16 x 64 bytes; MobileNetV2's 16-channel expansion ran 3x slower)."""
    def conv_asm(tir_pipeline: str | None = None) -> str:
        executable = _compile(_conv(16, 96, 1, act="relu6", hw=16), target, tir_pipeline)
        asm = "\n".join(m.inspect_source("asm") for m in executable.mod.imports if m.kind == "llvm")
        functions = re.split(r"\n(?=[A-Za-z_][\w.]*:)", asm)  # each with the parallel lambdas that follow it
        return "\n".join(f for f in functions if "conv2d" in f.split(":")[0])

    edgec_asm = conv_asm()
    assert "vfmadd231ps" in edgec_asm
    assert "TVMBackendAllocWorkspace" not in edgec_asm
    if target.name == "x86-64-avx512":  # what the test guards against: TVM's lowering of the same tile
        assert "TVMBackendAllocWorkspace" in conv_asm("default")


def test_padded_matmul_is_vectorized(target):
    """The Q K^T of 197 tokens, scheduled: padded copies, and a register tile of whole vectors."""
    from tvm import te

    from edgec.backends.tvm.schedules.cpu import Gemm

    q = te.placeholder((1, 3, 197, 64), name="q")
    kt = te.placeholder((1, 3, 64, 197), name="kt")
    r = te.reduce_axis((0, 64), "r")
    s = te.compute((1, 3, 197, 197), lambda b, h, i, j: te.sum(q[b, h, i, r] * kt[b, h, r, j], axis=r), name="s")
    scaled = te.compute(s.shape, lambda *i: s(*i) * 0.125, name="scaled")
    sch = Gemm().apply(te.create_prim_func([q, kt, scaled]), tvm.target.Target(target.tvm), False)
    assert sch is not None
    text = sch.mod["main"].script()
    lanes = 16 if "avx512" in target.name else 8
    assert "kt_pad" in text and "q_pad" in text
    tile = re.search(r"for \w+ in T.vectorized\((\d+)\):\n\s+with T.sblock\(\"s_update", text)
    assert tile and int(tile.group(1)) % lanes == 0, text


def test_fast_math_leaves_no_libm_calls(target):
    """Sigmoid, erf, tanh, exp and x ** 2, x ** 3 compile to vector code: no scalar libm calls in the kernels."""
    executable = _compile(CASES["nonlinear_fast_math"], target)
    llvm_ir = "\n".join(m.inspect_source("ll") for m in executable.mod.imports if m.kind == "llvm") \
        if hasattr(executable, "mod") else executable.inspect_source("ll")
    called = set(re.findall(r"call [^@]*@((?:llvm\.)?(?:exp|erf|tanh|pow)f?)[.(]", llvm_ir))  # libm, or LLVM's
    assert not called, called


def _parallel_loops(func) -> int:
    import tvm_ffi
    from tvm import tirx

    loops = []
    tvm_ffi.structural_walk(func, (tirx.For, lambda loop: loops.append(loop) if loop.kind == tirx.ForKind.PARALLEL
                                   else None))
    return len(loops)


def test_small_parallel_loops_of_unscheduled_kernels_run_serially():
    """A parallel loop inside the loop over kept boxes (TVM's NMS: one fork/join per kept box), or over a few rows,
    becomes serial; one over a dynamic batch of 256 x 256 elements (65536 >= MIN_PARALLEL_WORK) stays parallel."""
    from tvm.script import tirx as T

    from edgec.backends.tvm.schedules.cpu.small_parallel import serialize_small_parallel

    @T.prim_func
    def per_kept_box(counts: T.Buffer((3,), "int32"), scores: T.Buffer((3, 64), "float32")):
        for c in range(3):
            for j in range(counts[c]):
                for k in T.parallel(counts[c] - j - 1):
                    scores[c, j + 1 + k] = T.float32(-1)

    @T.prim_func
    def copy_rows(a: T.handle, b: T.handle):
        n = T.int64()
        x = T.match_buffer(a, (n * 256, 256))
        y = T.match_buffer(b, (n * 256, 256))
        for i in T.parallel(n * 256):
            for j in range(256):
                y[i, j] = x[i, j]

    @T.prim_func
    def copy_few_rows(x: T.Buffer((4, 256), "float32"), y: T.Buffer((4, 256), "float32")):
        for i in T.parallel(4):
            for j in range(256):
                y[i, j] = x[i, j]

    assert _parallel_loops(per_kept_box) == 1 and _parallel_loops(serialize_small_parallel(per_kept_box)) == 0
    assert _parallel_loops(serialize_small_parallel(copy_rows)) == 1
    assert _parallel_loops(serialize_small_parallel(copy_few_rows)) == 0


def _gathers_on_a_dynamic_batch() -> onnx.ModelProto:
    """x [B, 7, 6] -> x[:, 1] + x[:, -1] + x[0, 1] (Gathers with constant indices on static axes and the symbolic
    one)."""
    consts = [numpy_helper.from_array(np.array(i, np.int64), name) for i, name in ((1, "one"), (-1, "last"),
                                                                                   (0, "zero"))]
    nodes = [helper.make_node("Gather", ["x", "one"], ["a"], axis=1),
             helper.make_node("Gather", ["x", "last"], ["b"], axis=1),
             helper.make_node("Gather", ["x", "zero"], ["first"], axis=0),
             helper.make_node("Gather", ["first", "one"], ["c"], axis=0),
             helper.make_node("Add", ["a", "b"], ["ab"]),
             helper.make_node("Add", ["ab", "c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 7, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 6])], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_gather_index_on_a_static_axis_folds_with_a_dynamic_batch(target, host):
    """The importer normalises a Gather's index with `x.shape[axis]` read at run time (3 kernels per Gather with a
    symbolic batch); a static axis's dim is a constant, so only the takes remain. The symbolic axis keeps its
    run-time read, and every batch matches ONNX Runtime."""
    from tvm.relax.frontend.onnx import from_onnx

    model = _gathers_on_a_dynamic_batch()
    with tvm.transform.PassContext(opt_level=3):
        lowered = pipelines.relax_pipeline(target, CompileOptions())(
            from_onnx(model, keep_params_in_input=False))
    main = lowered["main"].script()
    assert len(re.findall(r"\bshape_to_tensor\w*\(", main)) == 1, main  # x[0]'s symbolic axis only
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = RNG.standard_normal((batch, 7, 6)).astype(np.float32)
        np.testing.assert_array_equal(_run_edgec(model, host, x), session.run(None, {"x": x})[0])
