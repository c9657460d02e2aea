"""Shared fixtures: the trained LeNet exported once, and its artifacts compiled once per session.

Host independence: tests that check generated code name their target (`CODEGEN_TARGETS`, compiled
here whatever the host is); only tests that run native code depend on the host, and they skip with
`needs_host_features(...)`, which names what the host lacks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgec.tvm_process import prepare_tvm

prepare_tvm()  # as edgec does before its first TVM import: tests import TVM directly too
REPO = Path(__file__).resolve().parents[1]
EDGEC = [sys.executable, "-m", "edgec.cli"]

# The x86-64 classes our machines come in: znver3 (AVX2 + FMA, no AVX-512) and AVX-512 + VNNI EPYCs.
CODEGEN_TARGETS = ("x86-64-avx2", "x86-64-avx512")


def host_features() -> set[str]:
    """The host CPU's ISA extensions as /proc/cpuinfo names them (what `--target cpu` detects)."""
    from edgec.targets import host_cpu_flags

    return host_cpu_flags()


def needs_host_features(*features: str):
    """Skip marker for a test that runs native code using `features`, naming the ones this host lacks."""
    missing = [f for f in features if f not in host_features()]
    return pytest.mark.skipif(bool(missing), reason=f"runs native code that needs {', '.join(features)}; "
                                                    f"this host lacks {', '.join(missing)}")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def _weights_digest() -> str:
    import hashlib

    weights = REPO / "models" / "weights"
    digest = hashlib.sha256()
    for path in sorted(weights.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def pytest_sessionstart(session):
    session.config.stash[WEIGHTS_KEY] = _weights_digest()


def pytest_sessionfinish(session, exitstatus):
    """Nothing but `edgec zoo train` writes models/weights/: a suite that changed them fails."""
    if session.config.stash.get(WEIGHTS_KEY, None) not in (None, _weights_digest()):
        session.config.get_terminal_writer().line("models/weights/ changed during the test run: no test may "
                                                  "retrain or rewrite the committed zoo weights", red=True)
        session.exitstatus = 1


WEIGHTS_KEY = pytest.StashKey[str]()


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with `make test-slow` (pytest --runslow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def run_edgec(*args, cwd=None, check=False) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess, as a user would; returns the completed process (text mode)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    proc = subprocess.run([*EDGEC, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"edgec {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def require_tool(tool: str, package: str) -> None:
    """Skip, naming the Debian package, when `tool` is not on PATH."""
    import shutil

    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian package {package}; `make toolchain-aarch64` installs it "
                    "as root)")


@pytest.fixture(scope="session")
def lenet_aarch64(lenet_onnx, tmp_path_factory) -> Path:
    """LeNet compiled for generic aarch64 through the CLI, as the acceptance criteria word it."""
    require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    out = tmp_path_factory.mktemp("aarch64") / "lenet-aarch64.edgec"
    run_edgec("compile", lenet_onnx, "--target", "aarch64", "-o", out, check=True)
    return out


@pytest.fixture(scope="session")
def lenet_onnx(tmp_path_factory) -> Path:
    from edgec.frontend.export import export_onnx, resolve_exportable

    net, shape, outputs = resolve_exportable("lenet")
    return export_onnx(net, shape, tmp_path_factory.mktemp("lenet") / "lenet.onnx", output_names=outputs)


@pytest.fixture(scope="session")
def lenet_artifacts(lenet_onnx, tmp_path_factory) -> dict[str, Path]:
    """{backend: artifact path} for LeNet compiled for the host CPU."""
    from edgec.compiler import compile_model

    out = tmp_path_factory.mktemp("artifacts")
    return {b: compile_model(lenet_onnx, "cpu", out / f"lenet-{b}.edgec", backend=b).path for b in ("tvm", "ort")}
