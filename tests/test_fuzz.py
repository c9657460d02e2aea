"""Property-based fuzzing of edgec's three trust boundaries: the ONNX loader, the artifact reader
(and runtime loader) and the runtime's input validation. Only EdgecError subclasses may escape;
anything else (or a crash) is a bug.

Bounded for CI (about half a minute in all). Fuzz longer by scaling every target's example count:
    EDGEC_FUZZ_SCALE=100 .venv/bin/python -m pytest -q tests/test_fuzz.py
Hypothesis keeps no example database here (database=None), so runs leave nothing in the tree.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability_errors import tiny_model

import edgec.runtime as rt
from edgec.compiler import compile_model
from edgec.errors import EdgecError
from edgec.frontend.loader import load_model
from edgec.runtime.artifact import read_artifact, write_artifact

SCALE = float(os.environ.get("EDGEC_FUZZ_SCALE", "1"))
RUNS: dict[str, int] = {}  # target -> examples run, printed at the end of the module (pytest -s shows it)


def fuzz_settings(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def _count(target: str) -> None:
    RUNS[target] = RUNS.get(target, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def report_runs():
    yield
    print("\nfuzz examples run: " + ", ".join(f"{k} {v}" for k, v in sorted(RUNS.items())))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    onnx.save(tiny_model(), d / "model.onnx")
    compile_model(d / "model.onnx", "cpu", d / "model.edgec", backend="ort")
    return d


@st.composite
def mutated(draw, data: bytes):
    """`data` with a few byte flips, deletions, insertions, a truncation or a duplicated span."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate", "duplicate"]))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if kind == "flip" and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and b:
            b[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif kind == "delete":
            del b[i:i + draw(st.integers(1, 16))]
        elif kind == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "truncate":
            del b[i:]
        elif kind == "duplicate":
            b[i:i] = b[i:i + draw(st.integers(1, 64))]
    return bytes(b)


def _expect_only_edgec_errors(fn):
    try:
        fn()
    except EdgecError:
        pass


# --- the ONNX loader ---------------------------------------------------------------------------

MODEL_BYTES = tiny_model().SerializeToString()


@fuzz_settings(400)
@given(data=mutated(MODEL_BYTES))
def test_loader_on_mutated_bytes(work, data):
    _count("loader: mutated bytes")
    path = work / "mutated.onnx"
    path.write_bytes(data)
    _expect_only_edgec_errors(lambda: load_model(path))


NAMES = st.one_of(st.sampled_from(["", "input", "Relu", "Conv", "x" * 300, "../w.bin", "com.acme", "ai.onnx"]),
                  st.text(max_size=12))
DIMS = st.lists(st.one_of(st.integers(-3, 10), st.just(1 << 40), st.text(max_size=3)), max_size=5)


@st.composite
def edited_model(draw):
    """The tiny model with a few fields set to odd values: op types, domains, dims, dtypes, attributes."""
    m = tiny_model()
    for _ in range(draw(st.integers(1, 4))):
        node = m.graph.node[draw(st.integers(0, len(m.graph.node) - 1))]
        what = draw(st.sampled_from(["op", "domain", "input", "dims", "dtype", "opset", "attr", "initializer",
                                     "external"]))
        if what == "op":
            node.op_type = draw(st.one_of(NAMES, st.sampled_from(["Celu", "If", "Loop", "Gemm", "Softmax"])))
        elif what == "domain":
            node.domain = draw(NAMES)
        elif what == "input" and node.input:
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(NAMES)
        elif what == "dims":
            shape = m.graph.input[0].type.tensor_type.shape
            del shape.dim[:]
            for d in draw(DIMS):
                dim = shape.dim.add()
                if isinstance(d, int):
                    dim.dim_value = d
                else:
                    dim.dim_param = d
        elif what == "dtype":
            m.graph.input[0].type.tensor_type.elem_type = draw(st.integers(0, 30))
        elif what == "opset":
            m.opset_import[0].version = draw(st.integers(-1, 30))
        elif what == "attr":
            name = draw(st.sampled_from(["pads", "axis", "alpha", "kernel_shape", "strides", "group"]))
            value = draw(st.one_of(st.integers(-5, 5), st.floats(allow_nan=True),
                                   st.lists(st.integers(-3, 3), min_size=1, max_size=6)))
            node.attribute.append(onnx.helper.make_attribute(name, value))
        elif what == "initializer":
            t = m.graph.initializer[draw(st.integers(0, len(m.graph.initializer) - 1))]
            t.dims[:] = draw(st.lists(st.integers(0, 6), max_size=4))
        elif what == "external":
            t = m.graph.initializer[0]
            t.data_location = onnx.TensorProto.EXTERNAL
            t.ClearField("raw_data")
            entry = t.external_data.add()
            entry.key, entry.value = "location", draw(st.one_of(NAMES, st.just("/etc/passwd"), st.just("a\0b")))
    return m.SerializeToString()


@fuzz_settings(300)
@given(data=edited_model(), shape=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3),
                                                                  st.integers(1, 9), st.integers(1, 9))))
def test_loader_on_edited_models(work, data, shape):
    _count("loader: edited fields")
    path = work / "edited.onnx"
    path.write_bytes(data)
    _expect_only_edgec_errors(lambda: load_model(path, {None: shape} if shape else None))


# --- the artifact reader and the runtime's loader ------------------------------------------------

X = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)


def _load_and_run(path: Path) -> None:
    """Load (verifies everything) and run; a successful load must still compute the right shape."""
    m = rt.load(path)
    out = m.run({"input": X})
    assert [a.shape for a in out.values()] == [(2, 3)]


@fuzz_settings(300)
@given(data=st.data())
def test_artifact_reader_on_mutated_bytes(work, data):
    _count("artifact: mutated bytes")
    path = work / "mutated.edgec"
    path.write_bytes(data.draw(mutated((work / "model.edgec").read_bytes())))
    _expect_only_edgec_errors(lambda: _load_and_run(path))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2, 2**40) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
MANIFEST_KEYS = ["schema_version", "backend", "files", "inputs", "outputs", "target", "precision", "backend_config",
                 "nms"]


TENSOR_NAMES = st.sampled_from(["output", "boxes", "scores", "selected"])
NMS = st.fixed_dictionaries({  # the optional host-NMS entry, with plausible and implausible parts
    "host": st.one_of(st.booleans(), st.lists(st.fixed_dictionaries({
        "output": TENSOR_NAMES, "boxes": TENSOR_NAMES, "scores": TENSOR_NAMES,
        "max_output_boxes_per_class": st.integers(-1, 5), "iou_threshold": st.floats(),
        "score_threshold": st.one_of(st.none(), st.floats()), "center_point_box": st.integers(-1, 2)}), max_size=2)),
    "graph_outputs": st.lists(st.fixed_dictionaries({"name": TENSOR_NAMES, "shape": st.just(["N", 3]),
                                                     "dtype": st.sampled_from(["float32", "int64"])}), max_size=2)})


@st.composite
def edited_manifest(draw, manifest: dict):
    m = json.loads(json.dumps(manifest))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(MANIFEST_KEYS))
        where = draw(st.sampled_from(["replace", "inner", "drop"]))
        if where == "drop":
            m.pop(key, None)
        elif where == "inner" and isinstance(m.get(key), dict) and m[key]:
            inner = draw(st.sampled_from(sorted(m[key])))
            m[key][inner] = draw(JSON)
        elif where == "inner" and isinstance(m.get(key), list) and m[key] and isinstance(m[key][0], dict):
            m[key][0][draw(st.sampled_from(["name", "shape", "dtype", "extra"]))] = draw(JSON)
        else:
            m[key] = draw(st.one_of(JSON, NMS) if key == "nms" else JSON)
    return m


@fuzz_settings(300)
@given(data=st.data())
def test_runtime_load_on_edited_manifests(work, data):
    """Edited manifests in well-formed zips (payload hashes still right): the manifest is not trusted either."""
    _count("artifact: edited manifest")
    manifest, files = read_artifact(work / "model.edgec")
    m = data.draw(edited_manifest(manifest))
    path = work / "edited.edgec"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps(m))
        for name, blob in files.items():
            z.writestr(name, blob)
    _expect_only_edgec_errors(lambda: _load_and_run(path))


SESSION_JSON = [b"{}", b"[]", b'{"graph_optimization_level": 1}',
                b'{"graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_num_threads": -1}']


@fuzz_settings(150)
@given(payloads=st.dictionaries(st.sampled_from(["model.onnx", "session.json", "model.so", "params.bin"]),
                                st.one_of(st.binary(max_size=64), st.sampled_from(SESSION_JSON)), max_size=3),
       backend=st.sampled_from(["ort", "tvm", "nope"]))
def test_runtime_load_on_consistent_but_hostile_payloads(work, payloads, backend):
    """Payloads whose hashes match (anyone can rewrite the manifest): still only typed errors."""
    _count("artifact: hostile payloads")
    manifest, files = read_artifact(work / "model.edgec")
    path = work / "hostile.edgec"
    write_artifact(path, dict(manifest, backend=backend), dict(files, **payloads))
    _expect_only_edgec_errors(lambda: _load_and_run(path))


ENTRY_NAMES = st.one_of(st.text(max_size=20), st.sampled_from(["../x", "/abs", "a/b", "a\\b", ".", "..",
                                                                "manifest.json", "model.onnx", "session.json"]))


@fuzz_settings(150)
@given(extra=st.lists(st.tuples(ENTRY_NAMES, st.integers(0, 0xFFFF), st.binary(max_size=16)), min_size=1, max_size=3))
def test_artifact_reader_on_hostile_entries(work, extra):
    """Extra entries with any names and any unix modes (symlinks, devices, dirs) are refused, never extracted."""
    _count("artifact: hostile entries")
    path = work / "entries.edgec"
    with zipfile.ZipFile(work / "model.edgec") as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        for name, mode, blob in extra:
            info = zipfile.ZipInfo("x")
            info.filename = name
            info.create_system = 3
            info.external_attr = mode << 16
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns about duplicate names: that is the point
                dst.writestr(info, blob)
    before = sorted(os.listdir(work))
    _expect_only_edgec_errors(lambda: _load_and_run(path))
    assert sorted(os.listdir(work)) == before


# --- the runtime's input validation --------------------------------------------------------------

DTYPES = ["float32", "float64", "float16", "int64", "int32", "uint8", "bool", ">f4", "complex64", "object", "U3"]


@st.composite
def feeds(draw):
    """Mostly-plausible feeds: right or wrong names, dtypes, ranks, dims, layouts; sometimes not arrays at all."""
    shape = draw(st.one_of(st.just([2, 1, 8, 8]), st.lists(st.integers(0, 9), max_size=5)))
    dtype = draw(st.sampled_from(DTYPES))
    x = np.zeros(shape, dtype=dtype) if dtype not in ("float32",) else \
        np.random.default_rng(draw(st.integers(0, 3))).standard_normal(shape).astype(np.float32)
    layout = draw(st.sampled_from(["c", "fortran", "reversed", "strided", "broadcast", "readonly"]))
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "reversed" and x.ndim:
        x = x[::-1]
    elif layout == "strided" and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    elif layout == "broadcast" and x.ndim and x.shape[0]:
        x = np.broadcast_to(x[:1], x.shape)
    elif layout == "readonly":
        x.flags.writeable = False
    value = draw(st.one_of(st.just(x), st.just(x), st.just(x), st.sampled_from([None, 1.5, "x", [[1.0]]]),
                           st.just(x.tolist() if x.size < 50 else None)))
    name = draw(st.one_of(st.just("input"), st.just("input"), NAMES))
    extra = draw(st.dictionaries(NAMES, st.just(x), max_size=1))
    return dict(extra, **{name: value})


@pytest.fixture(scope="module")
def module(work):
    return rt.load(work / "model.edgec")


@fuzz_settings(400)
@given(feed=feeds())
def test_runtime_input_validation(module, feed):
    """Either InputError, or a run whose result equals the run on a contiguous copy."""
    _count("runtime: inputs")
    m = module
    try:
        out = m.run(feed)
    except rt.InputError:
        return
    x = feed["input"]
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape[1:] == (1, 8, 8)
    assert np.array_equal(out["output"], m.run({"input": np.ascontiguousarray(x)})["output"])
