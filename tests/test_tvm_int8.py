"""True integer int8 on the TVM CPU backend: QDQ conv/matmul lowered to u8 x s8 -> int32 kernels.

Numerics: TVM's int8 output must match ONNX Runtime running the same QDQ model within one step of
the output's quantization (its DequantizeLinear scale): both compute the same integer accumulators,
and requantization may round a tie differently. Integer-ness: the compiled kernels read uint8/int8
buffers into int32 accumulators through x86 dot-product instructions (vpmaddubsw on AVX2, vpdpbusd
for a VNNI target). Tests that inspect generated code compile for each named x86 target
(`CODEGEN_TARGETS`) whatever the host is; tests that run kernels use the host (`--target cpu`).
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.backends.tvm.pipelines import cpu, tir
from edgec.quantize.calibration import calibration_inputs
from edgec.quantize.int8 import Int8Scheme, quantize, scheme_for
from edgec.targets import Target, resolve_target
from tests.conftest import CODEGEN_TARGETS

tvm = pytest.importorskip("tvm")

RNG = np.random.default_rng(5)
HOST = resolve_target("cpu")  # only for tests that run the kernels


@pytest.fixture(params=CODEGEN_TARGETS)
def codegen_target(request) -> Target:
    """A named x86 target whose generated code a test inspects (compiled only, never run)."""
    return resolve_target(request.param)


def _build(model: onnx.ModelProto, target: Target = HOST):
    """(VM executable, asm of its kernels) for `model` through edgec's CPU pipeline."""
    from tvm.relax.frontend.onnx import from_onnx

    tvm_target = tvm.target.Target(target.tvm)
    mod = from_onnx(model, dtype_dict={"input": "float32"}, keep_params_in_input=False)
    executable = tvm.compile(mod, target=tvm_target, relax_pipeline=cpu.pipeline(tvm_target),
                             tir_pipeline=tir.tir_pipeline("llvm"))
    return executable, executable.mod.imports[0].inspect_source("asm")


def _run(executable, x: np.ndarray) -> np.ndarray:
    vm = tvm.relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _output_step(model: onnx.ModelProto) -> float:
    """The scale of the DequantizeLinear producing the graph output: one quantization step of it."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    assert producer.op_type == "DequantizeLinear"
    return float(inits[producer.input[1]])


def _residual_block() -> onnx.ModelProto:
    """conv3x3(8->16, pad 1) + ReLU + depthwise conv3x3, plus a 1x1 shortcut conv, added, ReLU: float,
    quantized by the tests. The input's zero point is not 0 (padding with it), the ReLU output's is."""
    w = [numpy_helper.from_array((RNG.standard_normal(s) * 0.2).astype(np.float32), n)
         for n, s in (("w", (16, 8, 3, 3)), ("b", (16,)), ("wd", (16, 1, 3, 3)), ("ws", (16, 8, 1, 1)))]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "wd"], ["d"], pads=[1, 1, 1, 1], group=16),
             helper.make_node("Conv", ["input", "ws"], ["s"]),
             helper.make_node("Add", ["d", "s"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "residual",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 12, 12])], w)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _lenet_int8(lenet_onnx, target: Target) -> onnx.ModelProto:
    """LeNet quantized with the int8 scheme edgec uses for `target` (7-bit weights where vpmaddubsw saturates)."""
    model = onnx.load(lenet_onnx)
    return quantize(model, calibration_inputs("digits", model, 32), scheme=scheme_for(target, False))


@pytest.fixture(scope="module")
def lenet_u8(lenet_onnx):
    return _lenet_int8(lenet_onnx, HOST)


def _pooled_stem() -> onnx.ModelProto:
    """conv3x3(3->8, pad 1) + ReLU + max pool 3x3/2 (pad 1) + conv1x1(8->8): a ResNet stem, float."""
    w = [numpy_helper.from_array((RNG.standard_normal(s) * 0.3).astype(np.float32), n)
         for n, s in (("w", (8, 3, 3, 3)), ("w2", (8, 8, 1, 1)))]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["p", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "stem",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], w)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


SCHEMES = [Int8Scheme("uint8", reduce_range=True), Int8Scheme("int8")]


def _pooled_qdq(scheme: Int8Scheme) -> onnx.ModelProto:
    feeds = [{"input": RNG.standard_normal((1, 3, 12, 12)).astype(np.float32)} for _ in range(8)]
    return quantize(_pooled_stem(), feeds, scheme=scheme)


@pytest.fixture(scope="module", params=SCHEMES, ids=["u8-7bit", "s8"])
def residual_qdq(request):
    feeds = [{"input": RNG.standard_normal((1, 8, 12, 12)).astype(np.float32)} for _ in range(8)]
    return quantize(_residual_block(), feeds, scheme=request.param)


def test_lenet_int8_matches_ort_within_one_step(lenet_u8):
    x = RNG.random((4, 1, 28, 28), dtype=np.float32)
    executable, _ = _build(lenet_u8)
    diff = np.abs(_run(executable, x) - _ort(lenet_u8, x)).max()
    assert diff <= _output_step(lenet_u8) * 1.001


def test_residual_block_matches_ort_within_one_step(residual_qdq):
    x = RNG.standard_normal((1, 8, 12, 12)).astype(np.float32)
    executable, _ = _build(residual_qdq)
    diff = np.abs(_run(executable, x) - _ort(residual_qdq, x)).max()
    assert diff <= _output_step(residual_qdq) * 1.001


def test_max_pool_in_integers_matches_ort_within_one_step():
    """u8 activations only: with s8 ones, ONNX Runtime's own result for this graph is 20+ steps off the
    float model's (TVM's stays within 2 steps), so it is no reference there."""
    model = _pooled_qdq(SCHEMES[0])
    x = RNG.standard_normal((1, 3, 12, 12)).astype(np.float32)
    executable, _ = _build(model)
    diff = np.abs(_run(executable, x) - _ort(model, x)).max()
    assert diff <= _output_step(model) * 1.001


def _fused_kernels(model: onnx.ModelProto, target: Target) -> tuple[tvm.IRModule, dict]:
    """(Relax module, {name: PrimFunc}) after the CPU pipeline's rewrites and fusion for `target`."""
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(model, dtype_dict={"input": "float32"}, keep_params_in_input=False)
    tvm_target = tvm.target.Target(target.tvm)
    with tvm_target:
        mod = tvm.transform.Sequential(cpu.fused_passes(tvm_target))(mod)
    return mod, {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


@pytest.mark.parametrize("scheme", SCHEMES, ids=["u8-7bit", "s8"])
def test_max_pool_runs_on_quantized_values(scheme, codegen_target):
    """The pool reads and writes 8-bit values (the stem conv's output): no float pool between two QDQ pairs."""
    _, kernels = _fused_kernels(_pooled_qdq(scheme), codegen_target)
    pool = kernels.pop(next(name for name in kernels if "pool" in name))
    assert {str(p.dtype) for p in pool.params} <= {"uint8", "int8"}
    # input packing, its zero-point padding, stem conv, 1x1 conv, output layout
    assert len(kernels) == 5, list(kernels)


def test_three_channel_input_is_packed_one_int32_per_pixel(codegen_target):
    """The 3-channel input is quantized straight into one int32 per pixel (channel c in byte c), viewed as
    uint8 NHWC with 4 channels: the stem conv's dot products read it without a per-byte gather."""
    mod, kernels = _fused_kernels(_pooled_qdq(SCHEMES[0]), codegen_target)
    packing = [f for f in kernels.values() if str(f.params[0].dtype) == "float32" and len(f.params) == 2
               and [int(d) for d in f.params[0].shape] == [1, 3, 12, 12]]
    assert len(packing) == 1
    assert str(packing[0].params[1].dtype) == "int32" and [int(d) for d in packing[0].params[1].shape] == [1, 1, 12, 12]
    script = mod["main"].script()
    assert "R.memory.view" in script and "R.shape([1, 12, 12, 4]), R.dtype(\"uint8\")" in script


def _requantized_pool() -> onnx.ModelProto:
    """Q(s2) after a max pool whose input's DQ has s1."""
    inits = [numpy_helper.from_array(np.float32(v), n) for n, v in (("s1", 0.02), ("s2", 0.05))]
    inits += [numpy_helper.from_array(np.uint8(v), n) for n, v in (("z1", 100), ("z2", 30))]
    nodes = [helper.make_node("QuantizeLinear", ["input", "s1", "z1"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s1", "z1"], ["d"]),
             helper.make_node("MaxPool", ["d"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["p", "s2", "z2"], ["q2"]),
             helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["y"])]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 5, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_max_pool_requantized_to_other_parameters_matches_ort():
    model = _requantized_pool()
    x = RNG.standard_normal((1, 8, 9, 9)).astype(np.float32)
    executable, _ = _build(model)
    np.testing.assert_array_equal(_run(executable, x), _ort(model, x))


def test_max_pool_requantized_to_other_parameters_runs_on_u8(codegen_target):
    """The pool still runs on u8 values; the requantize to the other parameters is kept after it."""
    _, kernels = _fused_kernels(_requantized_pool(), codegen_target)
    pool = next(f for name, f in kernels.items() if "pool" in name)
    assert str(pool.params[0].dtype) == "uint8"


def _pads_per_tile(func, target: Target) -> bool:
    """Whether DotGemm computes `func`'s padding inside the conv's tile loop (not as a stage ahead of it)."""
    from edgec.backends.tvm.schedules.cpu import DotGemm

    sch = DotGemm().apply(func, tvm.target.Target(target.tvm), False)
    assert sch is not None, f"DotGemm declined the conv for {target.name}"
    pad, conv = (sch.get_loops(sch.get_sblock(name))[0] for name in ("pad_temp", "conv2d_nhwc_init"))
    return sch.get(pad).same_as(sch.get(conv))


def test_padding_is_computed_per_tile_except_for_packed_pixels(codegen_target):
    """A 16-channel 3x3 conv pads inside its parallel tile loop; an image's packed 4-byte pixels (the stem,
    zero point 0: the conv pads itself) stay one padding stage ahead of it."""
    w = numpy_helper.from_array((RNG.standard_normal((16, 16, 3, 3)) * 0.2).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = [{"input": RNG.random((1, 16, 16, 16), dtype=np.float32)} for _ in range(4)]
    _, kernels = _fused_kernels(quantize(model, feeds, scheme=SCHEMES[0]), codegen_target)
    assert _pads_per_tile(next(f for name, f in kernels.items() if "conv2d" in name), codegen_target)
    feeds = [{"input": RNG.random((1, 3, 12, 12), dtype=np.float32)} for _ in range(4)]  # zero point 0
    _, kernels = _fused_kernels(quantize(_pooled_stem(), feeds, scheme=SCHEMES[0]), codegen_target)
    stem = next(f for name, f in kernels.items() if "conv2d" in name and int(f.params[0].shape[-1]) == 4)
    assert "pad_temp" in stem.script() and not _pads_per_tile(stem, codegen_target)


def test_kernels_accumulate_integers(codegen_target):
    """The fused conv kernels take uint8 activations and int8 weights and accumulate in int32."""
    model = quantize(_residual_block(), [{"input": RNG.standard_normal((1, 8, 12, 12)).astype(np.float32)}],
                     scheme=Int8Scheme("uint8", reduce_range=True))
    mod, _ = _fused_kernels(model, codegen_target)
    convs = [f for gv, f in mod.functions_items() if "conv2d" in gv.name_hint]
    assert len(convs) == 3
    for func in convs:
        dtypes = {str(p.dtype) for p in func.params}
        script = func.script()
        assert {"uint8", "int8"} <= dtypes and "float32" not in {str(p.dtype) for p in func.params[:2]}
        assert '"int32")' in script and 'T.Cast("int32", ' in script


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_kernel_tiles_take_no_workspace(precision, codegen_target):
    """Accumulator tiles live on the stack (so in registers): TVM 0.27 takes every "local" buffer from the
    workspace pool, an allocate/free pair per tile of every call (18% of the zoo ResNet-18's int8 run)."""
    model = _residual_block()
    if precision == "int8":
        feeds = [{"input": RNG.standard_normal((1, 8, 12, 12)).astype(np.float32)} for _ in range(4)]
        model = quantize(model, feeds, scheme=scheme_for(codegen_target, False))
    executable, _ = _build(model, codegen_target)
    ir = executable.mod.imports[0].inspect_source("ll")
    pooled = set(re.findall(r"%([\w.]+) = tail call ptr %\d+\(i32 1, i32 %dev_id, i64", ir))  # workspace calls
    assert {name.rstrip("0123456789") for name in pooled} <= {"pad_temp"}  # padded inputs only


@pytest.mark.parametrize("target_name, used, unused", [("x86-64-avx2", ("vpmaddubsw", "vpmaddwd"), "vpdpbusd"),
                                                       ("x86-64-avx512", ("vpdpbusd",), "vpmaddubsw")])
def test_int8_kernels_use_the_targets_dot_product(lenet_onnx, target_name, used, unused):
    """Compile only, so both run on any host: AVX2's vpmaddubsw + vpmaddwd pair, VNNI's vpdpbusd."""
    target = resolve_target(target_name)
    _, asm = _build(_lenet_int8(lenet_onnx, target), target)
    assert all(op in asm for op in used) and unused not in asm


def test_lenet_int8_accuracy_within_one_point(lenet_onnx, tmp_path):
    import edgec.runtime as rt
    from edgec.compiler import compile_model
    from edgec.quantize.pipeline import Int8Options
    from edgec.zoo import data

    split = data.digits(28, 1)
    result = compile_model(lenet_onnx, "cpu", tmp_path / "lenet-int8.edgec", backend="tvm", precision="int8",
                           int8=Int8Options(calib="digits"))
    assert result.manifest["precision"] == "int8"
    module = rt.load(result.path)
    int8 = np.concatenate([module(split.x_test[i:i + 256])[0] for i in range(0, len(split.x_test), 256)])
    fp32 = _ort(onnx.load(lenet_onnx), split.x_test)
    accuracy = {k: float((v.argmax(1) == split.y_test).mean()) for k, v in (("int8", int8), ("fp32", fp32))}
    assert 100 * (accuracy["fp32"] - accuracy["int8"]) <= 1.0


def test_eight_channel_conv_on_avx512_takes_the_256_bit_vpdpbusd():
    """16 lanes do not divide 8 output channels: the VNNI target falls back to its 8-lane (ymm) vpdpbusd,
    not to the Gemm rule's plain int32 code (the AVX-512 stem kernel, before, was left untensorized)."""
    target = resolve_target("x86-64-avx512")
    feeds = [{"input": RNG.random((1, 3, 12, 12), dtype=np.float32)} for _ in range(4)]
    _, asm = _build(quantize(_pooled_stem(), feeds, scheme=scheme_for(target, False)), target)
    assert re.search(r"vpdpbusd\s+%ymm", asm) and not re.search(r"vpdpbusd\s+%zmm", asm)
