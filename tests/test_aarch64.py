"""Issue 8: aarch64 artifacts cross-compiled here, refused by this x86 runtime, and run under qemu-user
with the same numbers as the x86 build. Needs Debian's gcc-aarch64-linux-gnu and qemu-user-static
(`make toolchain-aarch64`); downloads (arm64 Debian packages, aarch64 wheels) are cached in .cache/."""

from __future__ import annotations

import json
import os
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import edgec.runtime as rt
from edgec.backends.tvm import link
from edgec.errors import EdgecError, UnsupportedError
from edgec.runtime.artifact import read_manifest
from edgec.targets import host_arch, resolve_target, target_names
from tests.conftest import REPO, require_tool, run_edgec

os.environ.setdefault("EDGEC_CACHE_DIR", str(REPO / ".cache"))  # git-ignored; shared with CLI subprocesses

import edgec.emulate as emu  # noqa: E402
from edgec.emulate import userland  # noqa: E402

EM_AARCH64 = 183  # ELF e_machine of AArch64
AARCH64_TARGETS = ("aarch64", "aarch64-cortex-a72", "aarch64-cortex-a76", "jetson-orin-cpu")

pytestmark = pytest.mark.skipif(host_arch() != "x86_64", reason="cross-compiles from an x86-64 host")


@pytest.fixture(scope="session")
def board() -> userland.Userland:
    """The emulated board's userland (fetched once into .cache/aarch64), or a skip saying why not."""
    require_tool("qemu-aarch64-static", "qemu-user-static")
    try:
        return userland.prepare(metadata.version("apache-tvm"), metadata.version("apache-tvm-ffi"),
                                metadata.version("numpy"))
    except emu.EmulationUnavailable as e:
        pytest.skip(f"no emulated arm64 userland: {e}")


def _elf_machine(artifact: Path) -> tuple[bytes, int]:
    with zipfile.ZipFile(artifact) as zf:
        header = zf.read("model.so")[:20]
    return header[:5], int.from_bytes(header[18:20], "little")


def test_aarch64_targets_resolve_to_llvm_cross_targets():
    for name in AARCH64_TARGETS:
        t = resolve_target(name)
        assert name in target_names()
        assert (t.device, t.arch, t.tvm["kind"], t.tvm["mtriple"]) == ("cpu", "aarch64", "llvm", "aarch64-linux-gnu")
        assert "+neon" in t.tvm["mattr"] and "asimd" in t.cpu_features
    assert resolve_target("aarch64-cortex-a76").tvm["mcpu"] == "cortex-a76"
    assert resolve_target("jetson-orin-cpu").tvm["mcpu"] == "cortex-a78ae"


def test_missing_cross_linker_is_named_with_its_package(monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # a PATH without the cross linker
    with pytest.raises(UnsupportedError) as e:
        link.export_options(resolve_target("aarch64"))
    assert str(e.value) == ("target 'aarch64': the cross linker aarch64-linux-gnu-gcc is not on PATH; install it "
                            "with `sudo apt-get install gcc-aarch64-linux-gnu` (or `make toolchain-aarch64`)")


def test_compile_for_aarch64_gives_an_aarch64_elf(lenet_aarch64):
    magic, machine = _elf_machine(lenet_aarch64)
    assert magic == b"\x7fELF\x02" and machine == EM_AARCH64  # 64-bit ELF for AArch64
    target = read_manifest(lenet_aarch64)["target"]
    assert (target["name"], target["arch"], target["tvm"]["mtriple"]) == ("aarch64", "aarch64", "aarch64-linux-gnu")


def test_this_x86_runtime_refuses_an_aarch64_artifact(lenet_aarch64):
    with pytest.raises(rt.ArtifactError, match=r"compiled for aarch64 \(target 'aarch64'\) but this host is x86_64"):
        rt.load(lenet_aarch64)


def test_lenet_under_emulation_matches_the_x86_build(board, lenet_aarch64, lenet_artifacts):
    from edgec.zoo import data

    split = data.digits(28, 1)
    x, y = split.x_test[:120], split.y_test[:120]  # a third of the held-out digits, in one batch
    run = emu.run(lenet_aarch64, [x], warmup=0, iters=1)
    expected = rt.load(lenet_artifacts["tvm"]).run({"input": x})["logits"]
    assert run.qemu_cpu == "cortex-a53"  # generic Armv8-A code runs on the oldest core qemu models
    assert run.outputs[0].shape == (120, 10)
    assert np.abs(run.outputs[0] - expected).max() < emu.ATOL
    assert (run.outputs[0].argmax(1) == y).mean() >= 0.95
    assert 0 < run.import_s < run.process_s and run.latency_ms["p50"] > 0


def test_bench_emulate_cli_labels_emulated_latency_and_checks_the_reference(board, lenet_aarch64, lenet_artifacts):
    proc = run_edgec("bench", lenet_aarch64, "--emulate", "--reference", lenet_artifacts["tvm"], "--warmup", "0",
                     "--iters", "3", "--json", check=True)
    result = json.loads(proc.stdout)
    assert (result["target"], result["iters"], result["batch"]) == ("aarch64", 3, 1)
    assert "not a board latency" in result["emulated"]["note"] and result["latency_ms"]["min"] > 0
    assert result["reference"]["within_atol"] and result["reference"]["max_abs_err"] < 1e-4


def test_emulation_refuses_an_x86_artifact_before_starting(lenet_artifacts):
    with pytest.raises(EdgecError, match=r"--emulate runs aarch64 artifacts; this one is for x86_64 \(target 'cpu'\)"):
        emu.bench(lenet_artifacts["tvm"])


@pytest.mark.slow
@pytest.mark.parametrize("target", ["aarch64-cortex-a72", "aarch64-cortex-a76"])
def test_cpu_specific_lenet_runs_on_its_emulated_core(board, lenet_onnx, lenet_artifacts, target, tmp_path):
    from edgec.compiler import compile_model

    require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    artifact = compile_model(lenet_onnx, target, tmp_path / "m.edgec").path
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    run = emu.run(artifact, [x], warmup=0, iters=1)
    assert run.qemu_cpu == target.removeprefix("aarch64-")
    assert np.abs(run.outputs[0] - rt.load(lenet_artifacts["tvm"])(x)[0]).max() < emu.ATOL


@pytest.mark.slow
def test_aarch64_artifact_is_byte_identical_when_recompiled(lenet_onnx, lenet_aarch64, tmp_path):
    again = tmp_path / "again.edgec"
    run_edgec("compile", lenet_onnx, "--target", "aarch64", "-o", again, check=True)
    assert again.read_bytes() == lenet_aarch64.read_bytes()


@pytest.mark.slow
def test_resnet18_under_emulation_matches_the_x86_build(board, tmp_path):
    """The zoo's ResNet-18 (trained weights when cached, else its seeded initialisation: the check is numeric)."""
    import torch

    from edgec.compiler import compile_model
    from edgec.frontend.export import export_onnx
    from edgec.zoo import registry, train

    require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    entry = registry.get("resnet18")
    if train.cached_metrics("resnet18"):
        net = train.load_trained("resnet18")
    else:
        torch.manual_seed(0)
        net = entry.build().eval()
    onnx_path = export_onnx(net, entry.input_shape, tmp_path / "resnet18.onnx", output_names=entry.output_names)
    arm = compile_model(onnx_path, "aarch64", tmp_path / "arm.edgec").path
    x86 = compile_model(onnx_path, "cpu", tmp_path / "x86.edgec").path
    x = np.random.default_rng(0).standard_normal(entry.input_shape).astype(np.float32)
    run = emu.run(arm, [x], warmup=0, iters=1)
    expected = rt.load(x86)(x)[0]
    assert run.outputs[0].shape == expected.shape == (1, 10)
    assert np.abs(run.outputs[0] - expected).max() < emu.ATOL
