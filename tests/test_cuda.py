"""CUDA targets on a machine without a GPU: TVM generates the kernels, nvcc compiles them to a cubin for
the target's SM, manifests name the target, and loading refuses clearly. Running on a GPU is checked
only where one exists."""

from __future__ import annotations

import shutil
import struct
import zipfile

import numpy as np
import pytest

import edgec.runtime as rt
from edgec.compiler import compile_model
from edgec.errors import UnsupportedError
from edgec.report.host import gpus

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not installed")
NO_GPU = "no NVIDIA GPU on this machine (nvidia-smi sees none); CUDA execution is verified on GPU hosts only"


@pytest.fixture(scope="module")
def cuda_artifacts(lenet_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda")
    return {(t, p): compile_model(lenet_onnx, t, out / f"{t}-{p}.edgec", precision=p)
            for t, p in [("cuda-sm_90", "fp32"), ("cuda-sm_80", "fp32")]}


def _library(path) -> bytes:
    return zipfile.ZipFile(path).read("model.so")


def _cubin_archs(library: bytes) -> list[int]:
    """SM numbers of the CUDA ELF images (e_machine EM_CUDA = 190) embedded in a host library."""
    archs, at = [], library.find(b"\x7fELF", 1)
    while at > 0:
        e_machine, = struct.unpack_from("<H", library, at + 18)
        e_flags, = struct.unpack_from("<I", library, at + 48)
        if e_machine == 190:
            archs.append((e_flags >> 8) & 0xFF)  # CUDA ELF ABI v8: the SM in bits 8-15
        at = library.find(b"\x7fELF", at + 1)
    return archs


def test_manifest_names_the_cuda_target(cuda_artifacts):
    manifest = cuda_artifacts[("cuda-sm_90", "fp32")].manifest
    assert manifest["backend"] == "tvm" and manifest["precision"] == "fp32"
    target = manifest["target"]
    assert (target["name"], target["device"], target["arch"]) == ("cuda-sm_90", "cuda", "x86_64")
    assert target["tvm"]["kind"] == "cuda" and target["tvm"]["arch"] == "sm_90"


def test_payload_is_host_library_with_a_cubin_for_the_arch(cuda_artifacts):
    library = _library(cuda_artifacts[("cuda-sm_90", "fp32")].path)
    assert library[:4] == b"\x7fELF" and int.from_bytes(library[18:20], "little") == 62  # x86-64 host code
    assert _cubin_archs(library) == [90]  # machine code for sm_90, loaded without a compiler
    assert b"\x05\x00\x00\x00\x00\x00\x00\x00cubin" in library and b"__global__" not in library  # no source


def test_the_packed_modules_are_where_tvms_loader_looks(cuda_artifacts, tmp_path):
    """`__tvm_ffi__library_bin` (an .incbin of the packed modules, not a C array) is an exported symbol whose
    leading u64 is the length of what follows: the host library, then the CUDA module with its cubin."""
    import ctypes
    import os

    path = tmp_path / "model.so"
    path.write_bytes(_library(cuda_artifacts[("cuda-sm_90", "fp32")].path))
    symbol = ctypes.c_uint64.in_dll(ctypes.CDLL(str(path), mode=os.RTLD_LAZY), "__tvm_ffi__library_bin")
    blob = ctypes.string_at(ctypes.addressof(symbol), 8 + symbol.value)
    assert blob.index(b"_lib") < blob.index(b"cuda") < blob.index(b"cubin")
    assert _cubin_archs(blob) == [90]


def test_each_arch_gets_its_own_machine_code(cuda_artifacts):
    sm80, sm90 = (cuda_artifacts[(t, "fp32")] for t in ("cuda-sm_80", "cuda-sm_90"))
    assert _cubin_archs(_library(sm80.path)) == [80]
    assert _library(sm80.path) != _library(sm90.path)
    config = sm80.manifest["backend_config"]["cuda"]
    assert config["arch"] == "sm_80" and config["kernels"] == "cubin" and config["nvcc"].startswith("13.")


def test_missing_nvcc_is_one_clear_error(lenet_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a PATH without the CUDA toolkit
    with pytest.raises(UnsupportedError, match=r"target 'cuda-sm_90': nvcc \(the CUDA toolkit's compiler\) is "
                                                 r"not on PATH"):
        compile_model(lenet_onnx, "cuda-sm_90", tmp_path / "x.edgec")


def test_cuda_compile_is_deterministic(lenet_onnx, cuda_artifacts, tmp_path):
    again = compile_model(lenet_onnx, "cuda-sm_90", tmp_path / "again.edgec", precision="fp32")
    assert again.path.read_bytes() == cuda_artifacts[("cuda-sm_90", "fp32")].path.read_bytes()


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="aarch64 cross linker not installed")
def test_jetson_orin_links_aarch64_host_code(lenet_onnx, tmp_path):
    result = compile_model(lenet_onnx, "jetson-orin", tmp_path / "orin.edgec")
    library = _library(result.path)
    assert int.from_bytes(library[18:20], "little") == 183  # EM_AARCH64
    assert result.manifest["target"]["tvm"]["arch"] == "sm_87" and _cubin_archs(library) == [87]


@pytest.mark.slow  # ToMixedPrecision + dlight take about 2 minutes on LeNet here
def test_fp16_compiles_for_cuda(lenet_onnx, tmp_path):
    result = compile_model(lenet_onnx, "cuda-sm_90", tmp_path / "fp16.edgec", precision="fp16")
    library = _library(result.path)
    assert result.manifest["precision"] == "fp16" and _cubin_archs(library) == [90]
    assert b"\x02\x10\x01\x00" in library  # a kernel argument of DLDataType float16 in the function table


@pytest.mark.skipif(bool(gpus()), reason="this host has a GPU")
def test_loading_without_a_gpu_fails_with_one_clear_error(cuda_artifacts):
    path = cuda_artifacts[("cuda-sm_90", "fp32")].path
    with pytest.raises(rt.ArtifactError, match=r"compiled for cuda \(target 'cuda-sm_90'\), and this host has no "
                                               r"NVIDIA GPU; run it on a machine with one, with device='cuda'$"):
        rt.load(path)
    with pytest.raises(rt.ArtifactError, match=r"device 'cuda' is not available on this host \(no CUDA GPU found\)"):
        rt.load(path, device="cuda")


@pytest.mark.skipif(not gpus(), reason=NO_GPU)
def test_runs_on_the_gpu_and_matches_pytorch(cuda_artifacts):
    import torch

    from edgec.zoo import train

    net = train.load_trained("lenet")
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    module = rt.load(cuda_artifacts[("cuda-sm_90", "fp32")].path, device="cuda")
    assert np.abs(module(x)[0] - net(torch.from_numpy(x)).detach().numpy()).max() < 1e-4


@pytest.mark.skipif(not gpus(), reason=NO_GPU)
@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_zoo_convnets_on_the_gpu_fp32_and_fp16(name, tmp_path):
    """The implicit-GEMM convs (fp32: dlight's Matmul schedule; fp16: tensor cores) against PyTorch fp32 on
    the CPU, on 64 held-out images: fp32 within 1e-3, fp16 with the same top-1 class on every image."""
    import torch

    from edgec.frontend.export import export_onnx, resolve_exportable
    from edgec.zoo import registry

    net, shape, outputs = resolve_exportable(name)
    path = export_onnx(net, shape, tmp_path / f"{name}.onnx", output_names=outputs)
    x = registry.get(name).load_data().x_test[:64]
    with torch.inference_mode():
        reference = net.eval()(torch.from_numpy(x)).numpy()
    for precision in ("fp32", "fp16"):
        artifact = compile_model(path, "cuda", tmp_path / f"{precision}.edgec", precision=precision).path
        out = rt.load(artifact, device="cuda")(x)[0]
        if precision == "fp32":
            assert np.abs(out - reference).max() < 1e-3
        else:
            assert (out.argmax(1) == reference.argmax(1)).all()
