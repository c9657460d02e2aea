"""Every bad input edgec meets, through the CLI and the runtime API, with the exact message it gives.

CLI: exit 2, exactly one stderr line `edgec: error: ...`, nothing on stdout, no traceback, no file
written or left behind. Runtime: a typed exception (InputError / ArtifactError) with the message.
The observed results also render docs/errors.md: `EDGEC_UPDATE_DOCS=1 pytest tests/test_reliability_errors.py`
rewrites it; otherwise the doc test fails when the doc and the real messages disagree.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec.runtime as rt
from edgec.cli import BACKENDS, main
from edgec.compiler import compile_model
from edgec.runtime.artifact import read_artifact, write_artifact
from edgec.runtime.executors import _MODULES as EXECUTORS
from edgec.targets import host_cpu_flags, target_names

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def tiny_model(batch="N", channels=1, act="Relu") -> onnx.ModelProto:
    """Conv(3x3) -> act -> GlobalAveragePool -> Reshape -> Gemm: input [batch, channels, 8, 8], output [batch, 3]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("W", rng.standard_normal((4, channels, 3, 3)).astype(np.float32)),
        ("B", rng.standard_normal(4).astype(np.float32)),
        ("G", rng.standard_normal((3, 4)).astype(np.float32)),
        ("GB", rng.standard_normal(3).astype(np.float32)),
        ("S", np.array([0, -1], np.int64))]]
    nodes = [helper.make_node("Conv", ["input", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node(act, ["c"], ["r"], name="act"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Reshape", ["p", "S"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "G", "GB"], ["output"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def rezip(src: Path, dst: Path, edit) -> Path:
    """Copy artifact `src` to `dst` entry by entry; `edit(name, data) -> [(ZipInfo|name, data), ...]`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            for entry, data in edit(info.filename, zin.read(info)):
                zout.writestr(info if entry == info.filename else entry, data)
    return dst


def rewrite_manifest(src: Path, dst: Path, change) -> Path:
    """Copy an artifact with `change(manifest) -> manifest` applied and payloads untouched."""
    return rezip(src, dst, lambda name, data: [(name, json.dumps(change(json.loads(data))).encode()
                                                 if name == "manifest.json" else data)])


def _symlink_entry(name: str) -> zipfile.ZipInfo:
    """A zip entry that unzip would create as a symlink (its data is the link target)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (0o120777 << 16)  # S_IFLNK | 0777
    return info


def make_bad_inputs(d: Path) -> None:
    """Write every bad input the tables below name into directory `d` (TVM compile: ~4 s, the rest < 1 s)."""
    model = tiny_model()
    onnx.save(model, d / "model.onnx")
    data = (d / "model.onnx").read_bytes()
    (d / "empty.onnx").write_bytes(b"")
    (d / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "truncated.onnx").write_bytes(data[: len(data) // 2])
    with open(d / "huge.onnx", "wb") as f:  # sparse: 2 GiB + 1 byte on paper, nothing on disk
        f.truncate((2 << 30) + 1)
    variants = {
        "unknown_op.onnx": lambda m: setattr(m.graph.node[1], "op_type", "FooRelu"),
        "custom_domain.onnx": lambda m: (setattr(m.graph.node[1], "domain", "com.acme"),
                                         m.opset_import.append(helper.make_opsetid("com.acme", 1))),
        "unimported_domain.onnx": lambda m: setattr(m.graph.node[1], "domain", "com.acme"),
        "negative_dim.onnx": lambda m: setattr(m.graph.input[0].type.tensor_type.shape.dim[0], "dim_value", -1),
        "bad_shape.onnx": lambda m: m.graph.initializer[2].CopyFrom(
            numpy_helper.from_array(np.zeros((5, 4), np.float32), "G")),
    }
    for name, change in variants.items():
        m = onnx.ModelProto.FromString(data)
        change(m)
        onnx.save(m, d / name)
    onnx.save(tiny_model(act="LpNormalization"), d / "lpnorm.onnx")
    for folder, location in (("ext_missing", "weights.bin"), ("ext_escape", "../secret.bin")):
        (d / folder).mkdir()
        m = onnx.ModelProto.FromString(data)
        onnx.save(m, d / folder / "model.onnx", save_as_external_data=True, location="weights.bin", size_threshold=0)
        (d / folder / "weights.bin").unlink()
        m = onnx.load(d / folder / "model.onnx", load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(m, d / folder / "model.onnx")

    good = compile_model(d / "model.onnx", "cpu", d / "model.edgec", backend="ort").path
    compile_model(d / "model.onnx", "x86-64-avx512", d / "avx512.edgec", backend="tvm")
    art = good.read_bytes()
    (d / "random.edgec").write_bytes(np.random.default_rng(1).bytes(4096))
    (d / "truncated.edgec").write_bytes(art[: len(art) // 2])

    def flip_last_byte(name, blob):
        return [(name, blob[:-1] + bytes([blob[-1] ^ 1]) if name == "model.onnx" else blob)]

    rezip(good, d / "tampered.edgec", flip_last_byte)
    rezip(d / "avx512.edgec", d / "tampered_so.edgec",
          lambda name, blob: [(name, blob + b"\0" if name == "model.so" else blob)])
    rezip(good, d / "traversal.edgec", lambda name, blob: [(name, blob)] + (
        [("../../evil.sh", b"echo owned\n")] if name == "manifest.json" else []))
    rezip(good, d / "symlink.edgec", lambda name, blob: [(name, blob)] + (
        [(_symlink_entry("link"), b"/etc/passwd")] if name == "manifest.json" else []))
    rezip(good, d / "unlisted.edgec", lambda name, blob: [(name, blob)] + (
        [("extra.bin", b"\x7fELF")] if name == "manifest.json" else []))
    rezip(good, d / "no_manifest.edgec", lambda name, blob: [] if name == "manifest.json" else [(name, blob)])
    rezip(good, d / "bad_json.edgec", lambda name, blob: [(name, b"{not json" if name == "manifest.json" else blob)])
    rewrite_manifest(good, d / "future.edgec", lambda m: dict(m, schema_version=2))
    rewrite_manifest(good, d / "bad_inputs_field.edgec", lambda m: dict(m, inputs=[{"name": "input", "shape": [1],
                                                                                     "dtype": "complex128"}]))
    manifest, files = read_artifact(good)
    write_artifact(d / "missing_payload.edgec", manifest, {"session.json": files["session.json"]})
    write_artifact(d / "bad_session.edgec", manifest,
                   dict(files, **{"session.json": b'{"graph_optimization_level": "__class__"}'}))
    write_artifact(d / "garbage_onnx.edgec", manifest, dict(files, **{"model.onnx": b"\x08\x07garbage"}))
    write_artifact(d / "unknown_backend.edgec", dict(manifest, backend="tensorflow"), files)
    (d / "calib.npz").write_bytes(b"")


# (command, case, argv, exit code, stderr line). Paths are relative to the bad-inputs directory.
E = "edgec: error: "
CORRUPT = "not a valid ONNX model (protobuf parse failed: Error parsing message with type 'onnx.ModelProto': " \
          "Wire format was corrupt); the file may be truncated or not ONNX"
TARGETS = ", ".join(target_names())
NOT_ZIP = "not an edgec artifact (not a valid zip: File is not a zip file; truncated, or not an .edgec file); " \
          "recompile it with `edgec compile`"
AVX512_MISSING = ", ".join(f for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni")
                           if f not in host_cpu_flags())
SHAPE = "expected positive integers joined by 'x', e.g. 1x3x224x224"
SYMBOLIC_SHAPE = "expected positive integers or dim names joined by 'x', e.g. 1x3x224x224 or Nx3x224x224"
COMPILE = ["compile", "model.onnx", "--target", "cpu", "--backend", "ort", "-o", "out.edgec"]
CLI_CASES = [
    ("export", "unknown zoo name", ["export", "nomodel", "-o", "out.onnx"], 2,
     "unknown zoo model 'nomodel'; known: {zoo}; or pass MODULE:CALLABLE returning a torch.nn.Module"),
    ("export", "module that does not exist", ["export", "nosuchmod:build", "-o", "out.onnx"], 2,
     "cannot load 'nosuchmod:build': No module named 'nosuchmod'"),
    ("export", "MODULE:ATTR not callable", ["export", "os:path", "-o", "out.onnx"], 2,
     "'os:path' is a module, not a callable returning a torch.nn.Module"),
    ("export", "callable that raises", ["export", "os:chdir", "-o", "out.onnx"], 2,
     "'os:chdir' raised TypeError: chdir() missing required argument 'path' (pos 1)"),
    ("export", "callable returning no nn.Module", ["export", "os:getcwdb", "-o", "out.onnx"], 2,
     "'os:getcwdb' returned bytes, expected a torch.nn.Module"),
    ("export", "bad --input-shape", ["export", "lenet", "--input-shape", "1x1x0", "-o", "out.onnx"], 2,
     f"--input-shape '1x1x0': {SHAPE}"),
    ("export", "--input-shape the network rejects", ["export", "lenet", "--input-shape", "1x3x28x28", "-o", "out.onnx"],
     2, "PyTorch's torchscript exporter could not export the model at input=1x3x28x28: Given groups=1, weight of "
        "size [6, 1, 5, 5], expected input[1, 3, 28, 28] to have 1 channels, but got 3 channels instead; check the "
        "input shape, or try --exporter dynamo"),
    ("export", "-o under a file", ["export", "lenet", "-o", "model.onnx/out.onnx"], 2,
     "model.onnx/out.onnx: cannot write the output (model.onnx is a file, not a directory); choose another -o path"),
    ("export", "unsupported --opset", ["export", "lenet", "--opset", "3", "-o", "out.onnx"], 2,
     "--opset 3: supported opsets are 7..23"),
    ("zoo export", "unknown zoo name", ["zoo", "export", "nomodel", "-o", "out.onnx"], 2,
     "unknown zoo model 'nomodel'; known: {zoo}; or pass MODULE:CALLABLE returning a torch.nn.Module"),
    ("zoo export", "MODULE:CALLABLE given", ["zoo", "export", "pkg:build", "-o", "out.onnx"], 2,
     "'pkg:build' is not a zoo name; use `edgec export MODULE:CALLABLE` for your own modules"),
    ("zoo export", "bad --input-shape", ["zoo", "export", "lenet", "--input-shape", "28by28", "-o", "out.onnx"], 2,
     f"--input-shape '28by28': {SHAPE}"),
    ("optimize", "missing file", ["optimize", "nope.onnx", "-o", "out.onnx"], 2, "nope.onnx: no such file"),
    ("optimize", "empty file", ["optimize", "empty.onnx", "-o", "out.onnx"], 2,
     "empty.onnx: file is empty; expected an ONNX model (export one with `edgec export`)"),
    ("optimize", "random bytes", ["optimize", "random.onnx", "-o", "out.onnx"], 2, f"random.onnx: {CORRUPT}"),
    ("optimize", "truncated file", ["optimize", "truncated.onnx", "-o", "out.onnx"], 2, f"truncated.onnx: {CORRUPT}"),
    ("optimize", "oversized file (> 2 GiB)", ["optimize", "huge.onnx", "-o", "out.onnx"], 2,
     "huge.onnx: 2147483649 bytes exceeds protobuf's 2 GiB limit; save the weights as ONNX external data "
     "(onnx.save(..., save_as_external_data=True))"),
    ("optimize", "a directory", ["optimize", ".", "-o", "out.onnx"], 2,
     "Invalid value for 'MODEL': File '.' is a directory. (see --help)"),
    ("optimize", "an .edgec artifact instead of ONNX", ["optimize", "model.edgec", "-o", "out.onnx"], 2,
     "model.edgec: is a zip file (an .edgec artifact?), not an ONNX model; pass the .onnx file, or use "
     "`edgec bench`/`edgec inspect` on a .edgec artifact"),
    ("optimize", "unknown op", ["optimize", "unknown_op.onnx", "-o", "out.onnx"], 2,
     "unknown_op.onnx: node 'act' (op FooRelu) is not an operator of the standard ONNX domain 'ai.onnx'; check "
     "the op name or export the model with standard ops"),
    ("optimize", "custom domain", ["optimize", "custom_domain.onnx", "-o", "out.onnx"], 2,
     "custom_domain.onnx: node 'act' (op Relu, domain 'com.acme') is a custom op from domain 'com.acme' that no "
     "edgec backend implements; replace it with standard ONNX ops before compiling"),
    ("optimize", "domain not in opset_import", ["optimize", "unimported_domain.onnx", "-o", "out.onnx"], 2,
     "unimported_domain.onnx: node 'act' (op Relu, domain 'com.acme') uses domain 'com.acme', which the model "
     "does not import; fix the exporter's opset_import"),
    ("optimize", "shapes that do not fit", ["optimize", "bad_shape.onnx", "-o", "out.onnx"], 2,
     "bad_shape.onnx: shape inference failed: [ShapeInferenceError] Inference error(s): (op_type:Gemm, node name: "
     "fc): [ShapeInferenceError] Inferred shape and existing shape differ in dimension 1: (5) vs (3); check "
     "--input-shape against what the model expects"),
    ("optimize", "negative input dim", ["optimize", "negative_dim.onnx", "-o", "out.onnx"], 2,
     "negative_dim.onnx: input 'input' has a negative dimension (-1x1x8x8); fix the model or pass --input-shape"),
    ("optimize", "external data file missing", ["optimize", "ext_missing/model.onnx", "-o", "out.onnx"], 2,
     "ext_missing/model.onnx: initializer 'W' needs external data file 'weights.bin', which is missing; put it "
     "next to model.onnx"),
    ("optimize", "external data outside the model's directory", ["optimize", "ext_escape/model.onnx", "-o", "out.onnx"],
     2, "ext_escape/model.onnx: initializer 'W' points at external data '../secret.bin' outside the model's "
        "directory; refusing it"),
    ("optimize", "empty --passes", ["optimize", "model.onnx", "--passes", ",", "-o", "out.onnx"], 2,
     "--passes ',': expected a comma-separated list"),
    ("compile", "random bytes", ["compile", "random.onnx", "--target", "cpu", "-o", "out.edgec"], 2,
     f"random.onnx: {CORRUPT}"),
    ("compile", "unknown op (tvm)", ["compile", "unknown_op.onnx", "--target", "cpu", "-o", "out.edgec"], 2,
     "unknown_op.onnx: node 'act' (op FooRelu) is not an operator of the standard ONNX domain 'ai.onnx'; check "
     "the op name or export the model with standard ops"),
    ("compile", "ONNX op the tvm backend lacks", ["compile", "lpnorm.onnx", "--target", "cpu", "-o", "out.edgec"], 2,
     "lpnorm.onnx: node 'act' (op LpNormalization), ai.onnx opset 17, is not supported by the tvm backend (TVM's "
     "ONNX importer has no converter for it); compile with --backend ort, or --backend auto to keep the fastest "
     "backend that compiles it"),
    ("compile", "custom domain (ort)", ["compile", "custom_domain.onnx", "--target", "cpu", "--backend", "ort",
                                        "-o", "out.edgec"], 2,
     "custom_domain.onnx: node 'act' (op Relu, domain 'com.acme') is a custom op from domain 'com.acme' that no "
     "edgec backend implements; replace it with standard ONNX ops before compiling"),
    ("compile", "--weightless with a backend that has none", [*COMPILE, "--weightless"], 2,
     "--weightless: backend 'ort' has no weight-stripped artifacts; use it with --backend tensorrt"),
    ("compile", "--no-winograd with a backend other than tvm", [*COMPILE, "--no-winograd"], 2,
     "--no-winograd is only used with --backend tvm (its CPU targets)"),
    ("compile", "TensorRT-RTX's target with tvm", ["compile", "model.onnx", "--target", "rtx", "-o", "out.edgec"], 2,
     "backend 'tvm' cannot compile for target 'rtx' (one TensorRT-RTX engine for NVIDIA GPUs sm_80, sm_86, sm_89 and "
     "sm_120 (Ampere, Ada, Blackwell RTX) on an x86-64 host): TVM builds for one GPU architecture; use --backend "
     "tensorrt, or --target cuda-sm_XX for tvm"),
    ("compile", "missing --target", ["compile", "model.onnx", "-o", "out.edgec"], 2,
     "Missing option '--target'. (see --help)"),
    ("compile", "unknown --target", ["compile", "model.onnx", "--target", "foo", "-o", "out.edgec"], 2,
     f"unknown target 'foo'; known targets: {TARGETS}"),
    ("compile", "unknown --precision", [*COMPILE, "--precision", "fp64"], 2,
     "Invalid value for '--precision': 'fp64' is not one of 'fp32', 'fp16', 'bf16', 'int8'. (see --help)"),
    ("compile", "int8 without --calib", [*COMPILE, "--precision", "int8"], 2,
     "--precision int8 needs calibration data: add --calib digits or --calib DATA.npz"),
    ("compile", "unknown --backend", [*COMPILE, "--backend", "trt"], 2,
     f"Invalid value for '--backend': 'trt' is not one of {', '.join(map(repr, (*BACKENDS, 'auto')))}. (see --help)"),
    ("compile", "--calib without int8", [*COMPILE, "--calib", "calib.npz"], 2,
     "--calib, --max-accuracy-drop and --validation-data are only used with --precision int8"),
    ("compile", "--input-shape not dims", [*COMPILE, "--input-shape", "1x3-x8"], 2,
     f"--input-shape '1x3-x8': {SYMBOLIC_SHAPE}"),
    ("compile", "--input-shape with a 0 dim", [*COMPILE, "--input-shape", "1x0x8x8"], 2,
     f"--input-shape '1x0x8x8': {SYMBOLIC_SHAPE}"),
    ("compile", "--input-shape empty", [*COMPILE, "--input-shape", ""], 2, f"--input-shape '': {SYMBOLIC_SHAPE}"),
    ("compile", "--input-shape empty name", [*COMPILE, "--input-shape", "=1x1x8x8"], 2,
     "--input-shape '=1x1x8x8': empty input name before '='"),
    ("compile", "--input-shape given twice", [*COMPILE, "--input-shape", "1x1x8x8", "--input-shape", "2x1x8x8"], 2,
     "--input-shape given twice for the input"),
    ("compile", "--input-shape unknown input", [*COMPILE, "--input-shape", "image=1x1x8x8"], 2,
     "model.onnx: --input-shape names 'image', but the model's inputs are input"),
    ("compile", "--input-shape wrong rank", [*COMPILE, "--input-shape", "1x8x8"], 2,
     "model.onnx: input 'input' has rank 4 but --input-shape gives 1x8x8 (rank 3)"),
    ("compile", "--input-shape too large", [*COMPILE, "--input-shape", "1x1x99999999999x8"], 2,
     "model.onnx: input 'input' has shape 1x1x99999999999x8 (799999999992 elements); edgec supports at most "
     "2147483647 elements per input, check --input-shape"),
    ("compile", "--input-shape the model cannot run", [*COMPILE, "--input-shape", "1x2x8x8"], 2,
     "model.onnx: cannot validate passes: ONNX Runtime cannot run the input model ([ONNXRuntimeError] : 1 : FAIL : "
     "Non-zero status code returned while running Conv node. Name:'conv' Status Message: Input channels C is not "
     "equal to kernel channels * group. C: 2 kernel channels: 1 group: 1); fix the model, give inputs that fit it, "
     "or use --no-validate"),
    ("compile", "-o is a directory", ["compile", "model.onnx", "--target", "cpu", "-o", "ext_missing"], 2,
     "Invalid value for '-o' / '--output': File 'ext_missing' is a directory. (see --help)"),
    ("compile", "-o under a file", [*COMPILE[:-1], "model.onnx/out.edgec"], 2,
     "model.onnx/out.edgec: cannot write the output (model.onnx is a file, not a directory); choose another -o path"),
    ("bench", "missing artifact", ["bench", "nope.edgec"], 2,
     "nope.edgec: no such artifact file (create one with `edgec compile`)"),
    ("bench", "ONNX file instead of an artifact", ["bench", "model.onnx"], 2,
     f"model.onnx: {NOT_ZIP}"),
    ("bench", "random bytes", ["bench", "random.edgec"], 2,
     f"random.edgec: {NOT_ZIP}"),
    ("bench", "truncated artifact", ["bench", "truncated.edgec"], 2,
     f"truncated.edgec: {NOT_ZIP}"),
    ("bench", "tampered payload", ["bench", "tampered.edgec"], 2,
     "tampered.edgec: sha256 of payload 'model.onnx' does not match the manifest; the artifact was modified or "
     "corrupted, refusing to load it"),
    ("bench", "tampered model.so", ["bench", "tampered_so.edgec"], 2,
     "tampered_so.edgec: sha256 of payload 'model.so' does not match the manifest; the artifact was modified or "
     "corrupted, refusing to load it"),
    ("bench", "unknown schema version", ["bench", "future.edgec"], 2,
     "future.edgec: unknown artifact schema_version 2; this edgec reads schema_version 1. Recompile the model with "
     "this edgec, or install the edgec version that wrote it"),
    ("bench", "zip path traversal", ["bench", "traversal.edgec"], 2,
     "traversal.edgec: entry name '../../evil.sh' is not a plain file name (path traversal or directories are "
     "refused)"),
    ("bench", "symlink entry", ["bench", "symlink.edgec"], 2,
     "symlink.edgec: entry 'link' is not a regular file (symlinks are refused)"),
    ("bench", "entry not in the manifest", ["bench", "unlisted.edgec"], 2,
     "unlisted.edgec: entry 'extra.bin' is not listed in the manifest; refusing a tampered artifact"),
    ("bench", "compiled for AVX-512, host lacks it", ["bench", "avx512.edgec"], 2,
     f"avx512.edgec: compiled for target 'x86-64-avx512', which needs CPU features this host lacks "
     f"({AVX512_MISSING}); recompile with `--target cpu`"),
    ("bench", "unknown --device", ["bench", "model.edgec", "--device", "gpu"], 2,
     "unknown device 'gpu'; use cpu, cuda or cuda:N"),
    ("bench", "--iters 0", ["bench", "model.edgec", "--iters", "0"], 2,
     "--iters must be >= 1 and --warmup >= 0 (got iters=0, warmup=10)"),
    ("bench", "--batch 0", ["bench", "model.edgec", "--batch", "0"], 2, "--batch 0: must be >= 1"),
    ("bench", "--iters not a number", ["bench", "model.edgec", "--iters", "many"], 2,
     "Invalid value for '--iters': 'many' is not a valid integer. (see --help)"),
    ("bench", "--rpc-tracker not HOST:PORT", ["bench", "model.edgec", "--rpc-tracker", "rpi4", "--rpc-key", "rpi4"],
     2, "--rpc-tracker 'rpi4': expected HOST:PORT, e.g. 127.0.0.1:9190"),
    ("bench", "--rpc-tracker without --rpc-key", ["bench", "model.edgec", "--rpc-tracker", "127.0.0.1:1"], 2,
     "--rpc-tracker needs --rpc-key KEY: the key the boards serve under (`edgec board list --tracker 127.0.0.1:1` "
     "lists them)"),
    ("bench", "ORT artifact over TVM RPC", ["bench", "model.edgec", "--rpc-tracker", "127.0.0.1:1", "--rpc-key",
                                            "rpi4"], 2,
     "model.edgec: ort artifacts cannot run over TVM RPC, which runs TVM modules; bench it on the board itself "
     "(`edgec bench` there), or compile with --backend tvm"),
    ("bench", "RPC tracker unreachable", ["bench", "avx512.edgec", "--rpc-tracker", "127.0.0.1:1", "--rpc-key",
                                          "rpi4"], 2,
     "RPC tracker 127.0.0.1:1 is unreachable (Connection refused); start it there with `python -m "
     "tvm.exec.rpc_tracker --host 0.0.0.0 --port 1` or check --rpc-tracker"),
    ("bench", "board unreachable", ["bench", "avx512.edgec", "--rpc", "127.0.0.1:1"], 2,
     "board at 127.0.0.1:1 is unreachable (Connection refused); start it there with `edgec board serve --port 1` or "
     "check --rpc"),
    ("board", "list: tracker unreachable", ["board", "list", "--tracker", "127.0.0.1:1"], 2,
     "RPC tracker 127.0.0.1:1 is unreachable (Connection refused); start it there with `python -m "
     "tvm.exec.rpc_tracker --host 0.0.0.0 --port 1` or check --tracker"),
    ("board", "serve: --tracker without --key", ["board", "serve", "--tracker", "127.0.0.1:1"], 2,
     "--tracker needs --key: the name clients ask the tracker for (e.g. --key rpi4)"),
    ("inspect", "missing ONNX file", ["inspect", "nope.onnx"], 2, "nope.onnx: no such file"),
    ("inspect", "random bytes", ["inspect", "random.onnx"], 2, f"random.onnx: {CORRUPT}"),
    ("inspect", "missing artifact", ["inspect", "nope.edgec"], 2,
     "nope.edgec: no such artifact file (create one with `edgec compile`)"),
    ("inspect", "tampered artifact", ["inspect", "tampered.edgec"], 2,
     "tampered.edgec: sha256 of payload 'model.onnx' does not match the manifest; the artifact was modified or "
     "corrupted, refusing to load it"),
    ("report", "missing ONNX file", ["report", "nope.onnx", "-o", "rep"], 2, "nope.onnx: no such file"),
    ("report", "random bytes", ["report", "random.onnx", "-o", "rep"], 2, f"random.onnx: {CORRUPT}"),
    ("report", "unknown zoo name", ["report", "nomodel", "-o", "rep"], 2,
     "unknown zoo model 'nomodel'; known: {zoo}; or pass a path to an .onnx file"),
    ("report", "empty --targets", ["report", "model.onnx", "--targets", ",", "-o", "rep"], 2,
     "--targets ',': expected a comma-separated list"),
    ("report", "unknown --precisions", ["report", "model.onnx", "--precisions", "fp64", "-o", "rep"], 2,
     "--precisions: unknown precision 'fp64'; choose from fp32, fp16, bf16, int8"),
    ("report", "unknown --backends", ["report", "model.onnx", "--backends", "trt", "-o", "rep"], 2,
     f"--backends: unknown backend 'trt'; choose from {', '.join(BACKENDS)}"),
    ("report", "unknown --dataset", ["report", "model.onnx", "--dataset", "nope", "-o", "rep"], 2,
     "unknown dataset 'nope'; use digits, random or a DATA.npz file"),
]

X = np.random.default_rng(2).standard_normal((2, 1, 8, 8)).astype(np.float32)
SPEC = "input: float32[Nx1x8x8]"


def _module():
    return rt.load("model.edgec")


# (API call, case, call, exception type, message). Run with the bad-inputs directory as the working directory.
RUNTIME_CASES = [
    ("rt.load", "not a path", lambda: rt.load(None), rt.InputError,
     "load() takes the path of an .edgec artifact (str or os.PathLike), got NoneType"),
    ("rt.load", "missing artifact", lambda: rt.load("nope.edgec"), rt.ArtifactError,
     "nope.edgec: no such artifact file (create one with `edgec compile`)"),
    ("rt.load", "random bytes", lambda: rt.load("random.edgec"), rt.ArtifactError,
     f"random.edgec: {NOT_ZIP}"),
    ("rt.load", "no manifest.json", lambda: rt.load("no_manifest.edgec"), rt.ArtifactError,
     "no_manifest.edgec: no manifest.json inside; not an edgec artifact"),
    ("rt.load", "manifest.json not JSON", lambda: rt.load("bad_json.edgec"), rt.ArtifactError,
     "bad_json.edgec: manifest.json is not valid JSON (Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1))"),
    ("rt.load", "malformed inputs in the manifest", lambda: rt.load("bad_inputs_field.edgec"), rt.ArtifactError,
     "bad_inputs_field.edgec: manifest.json 'inputs' entry {\"name\": \"input\", \"shape\": [1], \"dtype\": "
     "\"complex128\"} is not {name, shape, dtype} with dtype one of float32, float16, float64, int8, uint8, int16, "
     "int32, int64, bool"),
    ("rt.load", "tampered payload", lambda: rt.load("tampered.edgec"), rt.ArtifactError,
     "tampered.edgec: sha256 of payload 'model.onnx' does not match the manifest; the artifact was modified or "
     "corrupted, refusing to load it"),
    ("rt.load", "tampered model.so", lambda: rt.load("tampered_so.edgec"), rt.ArtifactError,
     "tampered_so.edgec: sha256 of payload 'model.so' does not match the manifest; the artifact was modified or "
     "corrupted, refusing to load it"),
    ("rt.load", "unknown schema version", lambda: rt.load("future.edgec"), rt.ArtifactError,
     "future.edgec: unknown artifact schema_version 2; this edgec reads schema_version 1. Recompile the model with "
     "this edgec, or install the edgec version that wrote it"),
    ("rt.load", "zip path traversal", lambda: rt.load("traversal.edgec"), rt.ArtifactError,
     "traversal.edgec: entry name '../../evil.sh' is not a plain file name (path traversal or directories are "
     "refused)"),
    ("rt.load", "symlink entry", lambda: rt.load("symlink.edgec"), rt.ArtifactError,
     "symlink.edgec: entry 'link' is not a regular file (symlinks are refused)"),
    ("rt.load", "entry not in the manifest", lambda: rt.load("unlisted.edgec"), rt.ArtifactError,
     "unlisted.edgec: entry 'extra.bin' is not listed in the manifest; refusing a tampered artifact"),
    ("rt.load", "payload missing (hashes consistent)", lambda: rt.load("missing_payload.edgec"), rt.ArtifactError,
     "missing_payload.edgec: ort artifact lacks the payload 'model.onnx'; recompile it with `edgec compile`"),
    ("rt.load", "bad session options (hashes consistent)", lambda: rt.load("bad_session.edgec"), rt.ArtifactError,
     "bad_session.edgec: payload 'session.json' is not valid ORT session options "
     "({'graph_optimization_level': '__class__'}); recompile it with `edgec compile`"),
    ("rt.load", "garbage model.onnx (hashes consistent)", lambda: rt.load("garbage_onnx.edgec"), rt.ArtifactError,
     "garbage_onnx.edgec: ONNX Runtime refused the payload 'model.onnx' ([ONNXRuntimeError] : 7 : INVALID_PROTOBUF "
     ": Failed to load model because protobuf parsing failed.); recompile it with `edgec compile`"),
    ("rt.load", "unknown backend", lambda: rt.load("unknown_backend.edgec"), rt.ArtifactError,
     "unknown_backend.edgec: artifact backend 'tensorflow' cannot be run by this edgec runtime (it runs: "
     f"{', '.join(sorted(EXECUTORS))})"),
    ("rt.load", "compiled for AVX-512, host lacks it", lambda: rt.load("avx512.edgec"), rt.ArtifactError,
     f"avx512.edgec: compiled for target 'x86-64-avx512', which needs CPU features this host lacks "
     f"({AVX512_MISSING}); recompile with `--target cpu`"),
    ("rt.load", "unknown device", lambda: rt.load("model.edgec", device="gpu"), rt.InputError,
     "unknown device 'gpu'; use cpu, cuda or cuda:N"),
    ("rt.load", "malformed device index", lambda: rt.load("model.edgec", device="cuda:x"), rt.InputError,
     "unknown device 'cuda:x'; use cpu, cuda or cuda:N"),
    ("rt.load", "CUDA device for an ORT (CPU) artifact", lambda: rt.load("model.edgec", device="cuda"), rt.InputError,
     "model.edgec: compiled for cpu (target 'cpu'); load it with device='cpu'"),
    ("Module.run", "unknown input name", lambda: _module().run({"image": X}), rt.InputError,
     f"input names do not match: unknown ['image'], missing ['input']; expected {SPEC}"),
    ("Module.run", "extra input", lambda: _module().run({"input": X, "mask": X}), rt.InputError,
     f"input names do not match: unknown ['mask'], missing []; expected {SPEC}"),
    ("Module.run", "no inputs", lambda: _module().run({}), rt.InputError,
     f"input names do not match: unknown [], missing ['input']; expected {SPEC}"),
    ("Module.run", "not a dict", lambda: _module().run([X]), rt.InputError,
     "run() takes a dict {input name: numpy array}, got list"),
    ("Module.run", "not a numpy array", lambda: _module().run({"input": X.tolist()}), rt.InputError,
     f"input 'input': expected a numpy array ({SPEC}), got list"),
    ("Module.run", "wrong dtype", lambda: _module().run({"input": X.astype(np.float64)}), rt.InputError,
     f"input 'input': dtype float64 does not match; expected {SPEC}, given input: float64[2x1x8x8] "
     "(convert with .astype('float32'))"),
    ("Module.run", "big-endian float32", lambda: _module().run({"input": X.astype(">f4")}), rt.InputError,
     f"input 'input': dtype >f4 does not match; expected {SPEC}, given input: >f4[2x1x8x8] "
     "(convert with .astype('float32'))"),
    ("Module.run", "wrong rank", lambda: _module().run({"input": X[0]}), rt.InputError,
     f"input 'input': shape (1, 8, 8) does not match; expected {SPEC}, given input: float32[1x8x8]"),
    ("Module.run", "wrong fixed dim", lambda: _module().run({"input": np.zeros((2, 1, 8, 9), np.float32)}),
     rt.InputError,
     f"input 'input': shape (2, 1, 8, 9) does not match; expected {SPEC}, given input: float32[2x1x8x9]"),
    ("Module.run", "empty batch", lambda: _module().run({"input": X[:0]}), rt.InputError,
     f"input 'input': shape (0, 1, 8, 8) does not match; expected {SPEC}, given input: float32[0x1x8x8]"),
    ("Module(x)", "wrong number of positional inputs", lambda: _module()(X, X), rt.InputError,
     f"expected 1 positional input(s) ({SPEC}), got 2"),
]


def _tree(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if not p.is_dir()}


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad-inputs")
    make_bad_inputs(d)
    return d


@pytest.fixture
def in_bad_dir(bad_dir, monkeypatch) -> Path:
    monkeypatch.chdir(bad_dir)
    return bad_dir


def _skip_avx512_on_avx512_hosts(case: str) -> None:
    if "AVX-512" in case and not AVX512_MISSING:
        pytest.skip("this host has AVX-512: the artifact runs here")


OBSERVED: dict[str, dict] = {}  # case id -> what the real run printed; the doc test renders it


def _zoo_names() -> str:
    from edgec.zoo.registry import ZOO

    return ", ".join(ZOO)


def run_cli_case(argv, d: Path, capfd) -> dict:
    """Run `edgec ARGV` in-process in `d`; return exit code, stdout, stderr lines and files it left."""
    before = _tree(d)
    capfd.readouterr()
    code = main(list(argv))
    out, err = capfd.readouterr()
    return {"code": code, "stdout": out, "stderr": err.splitlines(), "new_files": sorted(_tree(d) - before)}


def _cli_params():
    return [pytest.param(*c, id=f"{c[0]}: {c[1]}") for c in CLI_CASES]


@pytest.mark.parametrize("command, case, argv, code, message", _cli_params())
def test_cli_bad_input(command, case, argv, code, message, in_bad_dir, capfd):
    _skip_avx512_on_avx512_hosts(case)
    got = run_cli_case(argv, in_bad_dir, capfd)
    OBSERVED[f"cli {command}: {case}"] = got
    assert got["stderr"] == [E + message.format(zoo=_zoo_names())]
    assert (got["code"], got["stdout"], got["new_files"]) == (code, "", [])


@pytest.mark.parametrize("call, case, fn, exc, message", RUNTIME_CASES, ids=[f"{c[0]}: {c[1]}" for c in RUNTIME_CASES])
def test_runtime_bad_input(call, case, fn, exc, message, in_bad_dir):
    _skip_avx512_on_avx512_hosts(case)
    with pytest.raises(Exception) as e:  # any type: the exact one is asserted below
        fn()
    OBSERVED[f"runtime {call}: {case}"] = {"type": type(e.value).__name__, "message": str(e.value)}
    assert (type(e.value), str(e.value)) == (exc, message)


def _doc_row(*cells) -> str:
    """A markdown table row; the zoo and target lists (which grow) are abbreviated so the doc stays stable."""
    text = "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return text.replace(_zoo_names(), "{zoo names}").replace(TARGETS, "{target names}")


def render_doc() -> str:
    lines = [
        "# Errors edgec reports",
        "",
        "Every bad input below was run for real by `tests/test_reliability_errors.py`, which also writes this",
        "file (`EDGEC_UPDATE_DOCS=1 pytest tests/test_reliability_errors.py`) and fails when it is stale.",
        "The CLI prints exactly one line on stderr, exits 2 (1 only for internal errors; `--debug` adds the",
        "traceback) and writes no output file; the runtime raises `edgec.runtime.InputError` or",
        "`edgec.runtime.ArtifactError` (both `edgec.errors.EdgecError`). Paths are as the user typed them.",
        "",
        "## Command line",
        "",
        _doc_row("command", "bad input", "exit", "stderr"),
        _doc_row("---", "---", "---", "---"),
    ]
    for command, case, argv, *_ in CLI_CASES:
        got = OBSERVED[f"cli {command}: {case}"]
        stderr = " / ".join(line for line in got["stderr"] if line.startswith(E))
        lines.append(_doc_row(f"`edgec {' '.join(a if a else repr(a) for a in argv)}`", case, got["code"], stderr))
    lines += ["", "## Runtime API (`import edgec.runtime as rt`)", "",
              _doc_row("call", "bad input", "raises", "message"), _doc_row("---", "---", "---", "---")]
    for call, case, *_ in RUNTIME_CASES:
        got = OBSERVED[f"runtime {call}: {case}"]
        lines.append(_doc_row(f"`{call}`", case, f"`{got['type']}`", got["message"]))
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not AVX512_MISSING, reason="docs/errors.md is generated on a host without AVX-512")
def test_errors_doc_matches_real_runs(in_bad_dir, capfd):
    for command, case, argv, *_ in CLI_CASES:
        if f"cli {command}: {case}" not in OBSERVED:
            OBSERVED[f"cli {command}: {case}"] = run_cli_case(argv, in_bad_dir, capfd)
    for call, case, fn, *_ in RUNTIME_CASES:
        if f"runtime {call}: {case}" not in OBSERVED:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - recorded as it is
                OBSERVED[f"runtime {call}: {case}"] = {"type": type(e).__name__, "message": str(e)}
    text = render_doc()
    if os.environ.get("EDGEC_UPDATE_DOCS"):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text, encoding="utf-8")
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == text, \
        "docs/errors.md differs from the real messages: EDGEC_UPDATE_DOCS=1 pytest tests/test_reliability_errors.py"
