"""edgec's CUDA kernels without a GPU: the implicit-GEMM conv legalization computes the same numbers as a
direct convolution (checked on the CPU, where the same TE compute runs), and the CUDA build puts fp16
convs on the tensor cores with a tile per shape. Execution on a GPU is in tests/test_cuda.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
torch = pytest.importorskip("torch")

from tvm import relax  # noqa: E402

from edgec.backends.tvm.rewrites.conv_gemm import legalize_conv2d  # noqa: E402
from edgec.backends.tvm.schedules.cuda.conv_tensor_core import TILES, choose_tile, sm_count  # noqa: E402


def _conv_module(x_shape, w_shape, strides, padding, dilation):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    w = relax.Var("w", relax.TensorType(w_shape, "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.nn.conv2d(x, w, strides=strides, padding=padding, dilation=dilation,
                                                  data_layout="NHWC", kernel_layout="OHWI"))
        bb.emit_func_output(y)
    return bb.get()


@pytest.mark.parametrize("kernel, strides, padding, dilation", [
    (7, 2, 3, 1),  # ResNet's stem: 3 input channels, K = 147
    (3, 1, 1, 1),
    (3, 2, 1, 1),
    (1, 2, 0, 1),  # strided 1x1 shortcut
    (3, 1, (0, 1, 2, 1), 2),  # asymmetric padding, dilation
])
def test_implicit_gemm_conv_matches_a_direct_convolution(kernel, strides, padding, dilation):
    channels = 3 if kernel == 7 else 8
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 15, 13, channels)).astype(np.float32)
    w = rng.standard_normal((5, kernel, kernel, channels)).astype(np.float32)
    pads = padding if isinstance(padding, tuple) else (padding,) * 4
    mod = _conv_module(x.shape, w.shape, (strides, strides), pads, (dilation, dilation))
    mod = relax.transform.LegalizeOps({"relax.nn.conv2d": legalize_conv2d})(mod)
    assert any("conv2d_gemm" in gv.name_hint for gv in mod.functions)
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w)).numpy()
    top, left, bottom, right = pads
    padded = torch.nn.functional.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (left, right, top, bottom))
    expected = torch.nn.functional.conv2d(padded, torch.from_numpy(w).permute(0, 3, 1, 2), stride=strides,
                                          dilation=dilation).permute(0, 2, 3, 1).numpy()
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() < 1e-4


def test_grouped_convs_keep_tvms_legalization():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 8, 4), "float32"))
    w = relax.Var("w", relax.TensorType((4, 3, 3, 1), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.nn.conv2d(x, w, padding=(1, 1, 1, 1), groups=4, data_layout="NHWC",
                                                  kernel_layout="OHWI"))
        bb.emit_func_output(y)
    mod = relax.transform.LegalizeOps({"relax.nn.conv2d": legalize_conv2d})(bb.get())
    assert [gv.name_hint for gv in mod.functions if gv.name_hint != "main"] == ["conv2d"]


def test_tile_gives_every_sm_a_block_when_it_can():
    assert choose_tile(200704, 64, 132) == TILES[0]  # batch-16 stem: 1568 blocks of 128x128
    assert choose_tile(3136, 64, 132) == (2, 1, 2, 1)  # 98 x 2 blocks of 32x32
    assert choose_tile(49, 512, 132) == TILES[-1]  # batch-1 layer 4: at most 32 blocks, the smallest tile
    assert choose_tile(tvm.tirx.Var("n", "int64"), 512, 132) == TILES[0]  # symbolic rows count as many
    orin = sm_count(tvm.target.Target({"kind": "cuda", "arch": "sm_87"}))
    assert orin == 16 and choose_tile(3136, 64, orin) == TILES[0]  # 25 blocks of 128x128 fill a Jetson Orin


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not installed")
@pytest.mark.parametrize("precision, tensor_core_kernels", [("fp16", 2), ("fp32", 0)])
def test_fp16_convs_compile_to_tensor_core_kernels(precision, tensor_core_kernels, tmp_path):
    """A 3x3 conv with a 1x1 shortcut conv at batch 1: in fp16 both are wmma kernels, in fp32 neither; the
    launches are replayed from a CUDA graph."""
    from edgec.backends.base import CompileOptions
    from edgec.backends.tvm import pipelines
    from edgec.backends.tvm.backend import import_relax
    from edgec.targets import resolve_target
    from tests.test_tvm_schedules import _conv

    target = resolve_target("cuda-sm_90")
    mod, _ = import_relax(_conv(16, 32, 3, act="relu", residual=True, hw=14), "conv.onnx")
    options = CompileOptions(precision=precision)
    executable = tvm.compile(mod, target=tvm.target.Target(target.tvm),
                             relax_pipeline=pipelines.relax_pipeline(target, options))
    source = "\n".join(m.inspect_source() for m in _modules(executable.mod) if m.kind == "cuda")
    kernels = source.split("extern \"C\" __global__")[1:]
    assert sum("wmma::mma_sync" in k for k in kernels) == tensor_core_kernels
    assert "vm.builtin.cuda_graph.run_or_capture" in executable.as_text()  # static shapes: one CUDA graph


def _modules(module):
    yield module
    for child in module.imports:
        yield from _modules(child)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not installed")
def test_relu6_model_compiles_in_fp16(tmp_path):
    """ONNX Clip (ReLU6) reaches ToMixedPrecision as a Relax op, not the importer's opaque kernel (which
    failed MobileNetV2's fp16 build with "Expected TensorType")."""
    import onnx

    from edgec.compiler import compile_model
    from tests.test_tvm_schedules import _conv

    path = tmp_path / "relu6.onnx"
    onnx.save(_conv(8, 16, 3, act="relu6", hw=12), path)
    manifest = compile_model(path, "cuda-sm_90", tmp_path / "relu6.edgec", precision="fp16").manifest
    assert manifest["precision"] == "fp16" and manifest["backend_config"]["cuda"]["arch"] == "sm_90"
