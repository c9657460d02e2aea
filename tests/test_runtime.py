"""The runtime API per the contract: load, inputs/outputs, run, shortcut call, InputError, no torch/onnx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import edgec.runtime as rt
from edgec.runtime.artifact import read_artifact, write_artifact

X = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)


@pytest.mark.parametrize("backend", ["tvm", "ort"])
def test_load_and_run_api(backend, lenet_artifacts):
    m = rt.load(lenet_artifacts[backend], device="cpu")
    assert m.inputs == [("input", ("batch", 1, 28, 28), "float32")]
    assert m.outputs == [("logits", ("batch", 10), "float32")]
    outs = m.run({"input": X})
    assert list(outs) == ["logits"] and outs["logits"].shape == (1, 10) and outs["logits"].dtype == np.float32
    (y,) = m(X)
    assert np.array_equal(y, outs["logits"])


def test_backends_agree(lenet_artifacts):
    tvm_out = rt.load(lenet_artifacts["tvm"])(X)[0]
    ort_out = rt.load(lenet_artifacts["ort"])(X)[0]
    assert np.abs(tvm_out - ort_out).max() < 1e-4


@pytest.mark.parametrize("feeds, message", [
    ({"image": X}, "input names do not match: unknown ['image'], missing ['input']; "
                   "expected input: float32[batchx1x28x28]"),
    ({"input": X.astype(np.float64)}, "input 'input': dtype float64 does not match; expected "
                                      "input: float32[batchx1x28x28], given input: float64[1x1x28x28] "
                                      "(convert with .astype('float32'))"),
    ({"input": X[:, :, :27]}, "input 'input': shape (1, 1, 27, 28) does not match; expected "
                              "input: float32[batchx1x28x28], given input: float32[1x1x27x28]"),
    ({"input": X[0]}, "input 'input': shape (1, 28, 28) does not match; expected "
                      "input: float32[batchx1x28x28], given input: float32[1x28x28]"),
    ({"input": X.tolist()}, "input 'input': expected a numpy array (input: float32[batchx1x28x28]), got list"),
])
def test_bad_inputs_raise_input_error(lenet_artifacts, feeds, message):
    m = rt.load(lenet_artifacts["ort"])
    with pytest.raises(rt.InputError) as e:
        m.run(feeds)
    assert str(e.value) == message


@pytest.mark.parametrize("backend", ["tvm", "ort"])
def test_bind_checks_inputs_once_then_runs_repeatedly(backend, lenet_artifacts):
    """`Module.bind` (what `edgec bench` times on a GPU): inputs validated and staged at bind time."""
    m = rt.load(lenet_artifacts[backend])
    call = m.bind({"input": X})
    assert call() is None and call() is None
    with pytest.raises(rt.InputError, match=r"input 'input': dtype float64 does not match"):
        m.bind({"input": X.astype(np.float64)})


def test_non_contiguous_input_gives_same_result(lenet_artifacts):
    m = rt.load(lenet_artifacts["tvm"])
    wide = np.zeros((1, 1, 28, 56), np.float32)
    wide[..., ::2] = X
    view = wide[..., ::2]
    assert not view.flags.c_contiguous
    assert np.array_equal(m(view)[0], m(X)[0])


def test_tvm_inputs_in_any_memory_and_outputs_that_outlive_the_next_call(lenet_artifacts):
    """CPU inputs go to TVM zero-copy when aligned and writeable, via an aligned copy otherwise;
    outputs are views of memory the VM handed over, so a later call must not overwrite them."""
    m = rt.load(lenet_artifacts["tvm"])
    want = m(X)[0].copy()
    raw = np.zeros(X.size + 1, np.float32)
    misaligned = raw[1:].reshape(X.shape)
    misaligned[...] = X
    assert misaligned.ctypes.data % 64
    readonly = X.copy()
    readonly.flags.writeable = False
    for x in (misaligned, readonly):
        assert np.array_equal(m(x)[0], want)
    kept = m(X)[0]
    m(np.ones_like(X))
    assert np.array_equal(kept, want)


def test_tvm_input_passed_through_is_copied_out(tmp_path):
    """An output that is the input itself must not be a view of the caller's array or of the staging
    buffer the next call overwrites; inputs at every offset within a page come back exact."""
    from onnx import TensorProto, helper, save

    from edgec.compiler import compile_model

    spec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 1024]) for n in ("input", "out")]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", spec[:1], spec[1:])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "identity.onnx")
    m = rt.load(compile_model(tmp_path / "identity.onnx", "cpu", tmp_path / "identity.edgec").path)
    raw = np.zeros(4 * 1024 + 1024, np.float32)
    outputs = []
    for offset in range(0, 1024, 5):  # 4-byte steps through a page: aligned, misaligned, 4K-aliased
        x = raw[offset:offset + 4096].reshape(4, 1024)
        x[...] = offset
        (y,) = m(x)
        assert not np.shares_memory(y, raw) and np.all(y == offset)
        outputs.append(y)
    assert all(np.all(y == offset) for y, offset in zip(outputs, range(0, 1024, 5)))


def test_tampered_payload_is_refused(lenet_artifacts, tmp_path):
    manifest, files = read_artifact(lenet_artifacts["ort"])
    bad = tmp_path / "bad.edgec"
    with zipfile.ZipFile(lenet_artifacts["ort"]) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "model.onnx":
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(info, data)
    with pytest.raises(rt.ArtifactError, match="sha256 of payload 'model.onnx' does not match the manifest"):
        rt.load(bad)


def test_unknown_schema_version_is_refused(lenet_artifacts, tmp_path):
    manifest, files = read_artifact(lenet_artifacts["ort"])
    bad = tmp_path / "future.edgec"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("manifest.json", json.dumps(dict(manifest, schema_version=99)))
        for name, data in files.items():
            z.writestr(name, data)
    with pytest.raises(rt.ArtifactError, match="unknown artifact schema_version 99; this edgec reads schema_version 1"):
        rt.load(bad)


def test_artifact_for_missing_cpu_features_is_refused(lenet_artifacts, tmp_path):
    manifest, files = read_artifact(lenet_artifacts["tvm"])
    target = dict(manifest["target"], name="future-cpu", cpu_features=["avx512f", "edgec_imaginary_isa"])
    path = tmp_path / "future.edgec"
    write_artifact(path, dict(manifest, target=target), files)
    with pytest.raises(rt.ArtifactError, match="needs CPU features this host lacks .*edgec_imaginary_isa"):
        rt.load(path)


def test_large_payloads_are_stored_small_ones_deflated(lenet_artifacts, tmp_path):
    """A library of STORE_BYTES or more is stored (its weights do not compress; deflating GPT-2's took 14 s), the
    manifest and small files deflated; both read back to the same bytes."""
    from edgec.runtime.artifact import STORE_BYTES

    manifest, files = read_artifact(lenet_artifacts["ort"])
    weights = np.random.default_rng(0).random(STORE_BYTES // 4, dtype=np.float32).tobytes()
    path = tmp_path / "big.edgec"
    write_artifact(path, manifest, dict(files, **{"weights.bin": weights}))
    with zipfile.ZipFile(path) as z:
        kinds = {info.filename: info.compress_type for info in z.infolist()}
    assert kinds["weights.bin"] == zipfile.ZIP_STORED and kinds["manifest.json"] == zipfile.ZIP_DEFLATED
    assert read_artifact(path)[1]["weights.bin"] == weights


def test_manifest_per_contract(lenet_artifacts, lenet_onnx):
    import hashlib

    manifest, files = read_artifact(lenet_artifacts["tvm"])
    assert manifest["schema_version"] == 1 and manifest["backend"] == "tvm" and manifest["precision"] == "fp32"
    assert manifest["target"]["name"] == "cpu" and manifest["target"]["tvm"]["kind"] == "llvm"
    assert manifest["source_model_sha256"] == hashlib.sha256(lenet_onnx.read_bytes()).hexdigest()
    assert manifest["passes"] and set(manifest["toolchain"]) >= {"tvm", "onnx", "onnxruntime", "tensorrt"}
    assert manifest["files"] == {"model.so": hashlib.sha256(files["model.so"]).hexdigest()}
    assert files["model.so"][:4] == b"\x7fELF"


BLOCKED_RUN = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "onnx", "onnxscript", "onnx_ir", "sklearn", "models"):
                raise ImportError(f"blocked import of {name}")
    sys.meta_path.insert(0, Block())
    import numpy as np
    import edgec.runtime as rt
    m = rt.load(sys.argv[1])
    y = m(np.zeros((1, 1, 28, 28), np.float32))[0]
    bad = [k for k in sys.modules if k.split(".")[0] in ("torch", "onnx", "models")]
    print(y.shape, bad)
""")


@pytest.mark.parametrize("backend", ["tvm", "ort"])
def test_runtime_works_without_torch_or_onnx(backend, lenet_artifacts):
    proc = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(lenet_artifacts[backend])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(1, 10) []"


def test_module_is_shared_safely_between_threads(lenet_artifacts):
    from concurrent.futures import ThreadPoolExecutor

    m = rt.load(lenet_artifacts["tvm"])
    rng = np.random.default_rng(1)
    xs = [rng.random((1, 1, 28, 28), dtype=np.float32) for _ in range(32)]
    expected = [m(x)[0] for x in xs]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda x: m(x)[0], xs))
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))


def _named_x86_target_params():
    from edgec.targets import resolve_target
    from tests.conftest import CODEGEN_TARGETS, needs_host_features

    return [pytest.param(name, marks=needs_host_features(*resolve_target(name).cpu_features), id=name)
            for name in CODEGEN_TARGETS]


@pytest.mark.parametrize("target", _named_x86_target_params())
def test_named_x86_target_runs_where_the_host_has_its_features(target, lenet_onnx, lenet_artifacts, tmp_path):
    """Native code: an x86-64-avx2 / x86-64-avx512 build matches the host build, on hosts with its ISA."""
    from edgec.compiler import compile_model

    path = compile_model(lenet_onnx, target, tmp_path / f"lenet-{target}.edgec", backend="tvm").path
    x = np.random.default_rng(2).random((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(rt.load(path)(x)[0], rt.load(lenet_artifacts["tvm"])(x)[0], atol=1e-5, rtol=1e-5)


THREAD_AFFINITY = textwrap.dedent("""
    import os, sys
    import numpy as np
    import edgec.runtime as rt
    rt.load(sys.argv[1])(np.zeros((1, 1, 28, 28), np.float32))  # its conv is parallel: TVM starts its workers
    print(len({frozenset(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread affinities from /proc")
def test_tvm_worker_threads_are_not_pinned(lenet_artifacts):
    """TVM pins each worker to one core, where it waits whenever another process holds that core (the zoo
    detector on the shared 2-core host: p50 3.5 ms pinned, 0.70 ms not); edgec's default leaves them unpinned."""
    env = {k: v for k, v in os.environ.items() if k != "TVM_BIND_THREADS"}
    proc = subprocess.run([sys.executable, "-c", THREAD_AFFINITY, str(lenet_artifacts["tvm"])],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"  # every thread may run on every CPU the process may
