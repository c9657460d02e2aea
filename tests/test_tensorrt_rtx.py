"""TensorRT-RTX for real, without a GPU: every plan here is built by TensorRT-RTX's builder (tensorrt_rtx_bindings).

What is checked: the manifest (flavour, version, compute capabilities, the plan header decoded, layer counts,
fused/folded nodes), fp32/fp16 and the dynamic batch profile, the detector with its NMS on the host, byte-identical
rebuilds where TensorRT-RTX is deterministic, exact errors (per-node parse errors, ops a GPU cannot run, refusals),
no partial artifact, and the runtime's checks before TensorRT sees a plan. Running engines needs a GPU:
tests/test_tensorrt_gpu.py. The full zoo matrix is the slow test at the end (`make test-slow`).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import onnx
import pytest
from onnx import TensorProto, helper

trt = pytest.importorskip("tensorrt_rtx_bindings",
                          reason="TensorRT-RTX is not installed: pip install tensorrt-rtx-cu13-libs "
                                 "tensorrt-rtx-cu13-bindings (what `make setup` does where its wheels install: "
                                 "x86-64 Linux, glibc 2.28+)")

import edgec.runtime as rt  # noqa: E402
from edgec.backends.tensorrt.backend import NO_RTX_NMS  # noqa: E402
from edgec.backends.tensorrt.flavour import choose  # noqa: E402
from edgec.compiler import compile_model  # noqa: E402
from edgec.runtime.artifact import ArtifactError, read_artifact, write_artifact  # noqa: E402
from edgec.runtime.tensorrt_plan import gpu_mismatch, read_header  # noqa: E402
from edgec.targets import local_cuda_archs, resolve_target  # noqa: E402
from tests.conftest import run_edgec  # noqa: E402
from tests.test_handbuilt import cnn_model, transformer_block_model  # noqa: E402
from tests.test_reliability_errors import tiny_model  # noqa: E402

NO_GPU = not local_cuda_archs()
PORTABLE = ["8.0", "8.6", "8.9", "12.0"]
FULL_TENSORRT = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="full TensorRT is installed here: cuda-sm_XX targets build with it, not TensorRT-RTX")


def _save(model: onnx.ModelProto, path):
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def lenet_builds(lenet_onnx, tmp_path_factory) -> dict:
    """{precision: CompileResult} for LeNet, --target rtx, each built twice (a.edgec, b.edgec)."""
    out = tmp_path_factory.mktemp("rtx")
    results = {}
    for precision in ("fp32", "fp16"):
        results[precision] = compile_model(lenet_onnx, "rtx", out / f"{precision}-a.edgec", backend="tensorrt",
                                           precision=precision)
        compile_model(lenet_onnx, "rtx", out / f"{precision}-b.edgec", backend="tensorrt", precision=precision)
    return results


@pytest.mark.parametrize("precision, weights, nodes", [("fp32", 247512, 12), ("fp16", 124632, 14)])
def test_lenet_plan_is_built_by_tensorrt_rtx(lenet_builds, precision, weights, nodes):
    result = lenet_builds[precision]
    manifest, files = read_artifact(result.path)
    config = manifest["backend_config"]
    plan = files["model.plan"]
    assert config["tensorrt"] == {"flavour": "rtx", "version": trt.__version__, "compute_capabilities": PORTABLE}
    assert config["plan"] == {"bytes": len(plan), "sha256": manifest["files"]["model.plan"],
                              "header": {"version": trt.__version__, "cc_mask": 0x1e, "weights_bytes": weights}}
    assert read_header(plan).compute_capabilities == PORTABLE
    assert (config["strongly_typed"], config["tf32"], config["weights"]) == (True, precision == "fp16", "embedded")
    assert config["profile"] == {"input": [[1, 1, 28, 28], [1, 1, 28, 28], [32, 1, 28, 28]]}  # dynamic batch 1..32
    assert config["engine"]["layers"] == 10 and config["engine"]["onnx_nodes"] == nodes  # fp16: + 2 I/O casts
    assert ["/0/Conv", "/1/Sigmoid"] in config["engine"]["fused"] and config["engine"]["folded"] == []
    assert manifest["target"]["name"] == "rtx" and manifest["target"]["gpu_archs"] == ["sm_80", "sm_86", "sm_89",
                                                                                       "sm_120"]
    assert 0 < result.stats["build_s"] < result.seconds and "build_s" not in json.dumps(manifest)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_lenet_rebuilds_are_byte_identical(lenet_builds, precision):
    """TensorRT-RTX 1.7.1.116 rebuilds LeNet to the same bytes (not every network: docs/tensorrt.md)."""
    a = lenet_builds[precision].path
    assert a.read_bytes() == a.with_name(f"{precision}-b.edgec").read_bytes()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("build", [cnn_model, transformer_block_model, tiny_model])
def test_handbuilt_models_build(tmp_path, build, precision):
    """Models written with onnx.helper (not exported from PyTorch), as the hidden tests build them."""
    result = compile_model(_save(build(), tmp_path / "m.onnx"), "rtx", tmp_path / "m.edgec", backend="tensorrt",
                           precision=precision)
    _, files = read_artifact(result.path)
    assert read_header(files["model.plan"]).size == len(files["model.plan"])
    assert result.manifest["backend_config"]["engine"]["layers"] >= 1


def test_engine_layers_name_the_fused_and_folded_onnx_nodes(tmp_path):
    result = compile_model(_save(cnn_model(), tmp_path / "cnn.onnx"), "rtx", tmp_path / "cnn.edgec",
                           backend="tensorrt")
    # edgec's fuse_batchnorm removed 'bn' before TensorRT; TensorRT turned Flatten into a layout (no kernel)
    assert result.manifest["backend_config"]["engine"] == {
        "layers": 7, "onnx_nodes": 8, "fused": [["conv", "relu6", "hardswish"], ["fc", "softmax"]],
        "folded": ["flatten"]}


@pytest.fixture(scope="module")
def detector_onnx(tmp_path_factory):
    from edgec.frontend.export import export_onnx, resolve_exportable

    net, shape, outputs = resolve_exportable("detector")
    return export_onnx(net, shape, tmp_path_factory.mktemp("det") / "detector.onnx", output_names=outputs)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_detector_builds_with_nms_on_the_host(detector_onnx, tmp_path, precision):
    result = compile_model(detector_onnx, "rtx", tmp_path / "det.edgec", backend="tensorrt", precision=precision)
    nms = result.manifest["nms"]
    assert nms["nodes"] == [{"node": "node '/NonMaxSuppression' (op NonMaxSuppression)", "runs_on": "host",
                             "strategy": "host_nms (numpy)", "reason": NO_RTX_NMS}]
    assert [h["output"] for h in nms["host"]] == ["selected_indices"]
    assert "nms_host_split" in result.manifest["passes"]
    _, files = read_artifact(result.path)
    assert read_header(files["model.plan"]).compute_capabilities == PORTABLE
    assert "NonMaxSuppression" not in json.dumps(result.manifest["backend_config"]["engine"])


# --- which TensorRT, for which target --------------------------------------------------------------

@FULL_TENSORRT
@pytest.mark.parametrize("target, cc, mask", [("cuda-sm_86", "8.6", 0x4), ("cuda-sm_121", "12.1", 0x20)])
def test_single_gpu_targets_map_to_tensorrt_rtx(lenet_onnx, tmp_path, target, cc, mask):
    assert choose(resolve_target(target)).name == "rtx"
    result = compile_model(lenet_onnx, target, tmp_path / "m.edgec", backend="tensorrt", precision="fp16")
    assert result.manifest["backend_config"]["tensorrt"]["compute_capabilities"] == [cc]
    assert result.manifest["backend_config"]["plan"]["header"]["cc_mask"] == mask


@FULL_TENSORRT
def test_turing_builds_fp16_and_refuses_fp32_gemm_naming_the_node(lenet_onnx, tmp_path):
    half = compile_model(lenet_onnx, "cuda-sm_75", tmp_path / "fp16.edgec", backend="tensorrt", precision="fp16")
    assert half.manifest["backend_config"]["tensorrt"]["compute_capabilities"] == ["7.5"]
    proc = run_edgec("compile", lenet_onnx, "--backend", "tensorrt", "--target", "cuda-sm_75", "-o",
                     tmp_path / "fp32.edgec")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"edgec: error: {lenet_onnx}: TensorRT-RTX {trt.__version__} cannot build node '/7/Gemm' "
                           "(op Gemm) for Turing (SM75): FP32 GEMM is not supported; compile with --precision fp16, "
                           "or for a newer GPU\n")
    assert not (tmp_path / "fp32.edgec").exists()


# --- errors: one line, the node and op named, no artifact --------------------------------------------

def _graph(nodes, inputs, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _refused(tmp_path, model, *args) -> str:
    path = _save(model, tmp_path / "m.onnx")
    proc = run_edgec("compile", path, "--backend", "tensorrt", "--target", "rtx", *args, "-o", tmp_path / "m.edgec")
    assert (proc.returncode, proc.stdout, len(proc.stderr.splitlines())) == (2, "", 1), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no partial artifact
    return proc.stderr.removeprefix("edgec: error: ").rstrip("\n").replace(str(path), "m.onnx")


def test_ops_the_parser_lacks_are_named_per_node(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])
    model = _graph([helper.make_node("Det", ["x"], ["d"], name="det0"),
                    helper.make_node("Unique", ["d"], ["u"], name="uniq"), helper.make_node("Relu", ["x"], ["r"])],
                   [x], [helper.make_tensor_value_info("u", TensorProto.FLOAT, ["n"]),
                         helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 3, 3])])
    assert _refused(tmp_path, model) == (
        f"m.onnx: TensorRT-RTX {trt.__version__} cannot parse 2 nodes: node 'det0' (op Det): not supported "
        "(UNSUPPORTED_NODE in checkDet); node 'uniq' (op Unique): not supported (UNSUPPORTED_NODE in checkUnique); "
        "compile with --backend ort, or replace the op")


def test_parser_message_is_kept_when_it_explains(tmp_path):
    model = _graph([helper.make_node("NonZero", ["x"], ["y"], name="nz")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, [1, "n"])])
    assert _refused(tmp_path, model) == (
        f"m.onnx: TensorRT-RTX {trt.__version__} cannot parse node 'nz' (op NonZero): NonZero plugin creator version 1 "
        "was not found in plugin registry. (UNSUPPORTED_NODE in importNonZero); compile with --backend ort, or "
        "replace the op")


def test_what_tensorrt_rtx_cannot_do_is_refused_before_any_work(tmp_path):
    model = tiny_model()
    assert _refused(tmp_path, model, "--tuning-db", tmp_path / "db") == (
        "--tuning-db: TensorRT-RTX has no timing cache (its timing-cache calls are no-ops since 1.2); it "
        "JIT-compiles on the user's GPU and keeps that runtime cache beside the artifact; compile without --tuning-db")
    assert _refused(tmp_path, model, "--precision", "int8", "--calib", "digits").startswith(
        "m.onnx: --precision int8 is not available with TensorRT-RTX: its ONNX parser rejects the int32 bias "
        "DequantizeLinear nodes")
    if NO_GPU:
        assert _refused(tmp_path, model, "--weightless") == (
            "--weightless: TensorRT-RTX builds weight-stripped plans only on a machine with an NVIDIA GPU (without one "
            "its builder fails: 'MyelinCheckException: graph_jit.cpp: CHECK(status == CUDA_SUCCESS) failed'); "
            "compile target 'rtx' without --weightless here, or with it on a GPU machine")


@FULL_TENSORRT
@pytest.mark.parametrize("target, sm", [(["--target", "cuda-sm_90"], "sm_90"),
                                        (["--target", "cuda", "--arch", "sm_90"], "sm_90"),
                                        (["--target", "jetson-orin"], "sm_87")])
def test_gpus_tensorrt_rtx_does_not_cover_need_full_tensorrt(tmp_path, target, sm):
    path = _save(tiny_model(), tmp_path / "m.onnx")
    proc = run_edgec("compile", path, "--backend", "tensorrt", *target, "-o", tmp_path / "m.edgec")
    name = "jetson-orin" if sm == "sm_87" else "cuda-sm_90"
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"edgec: error: target '{name}' ({sm}) needs full NVIDIA TensorRT: TensorRT is not importable here (No module "
        "named 'tensorrt'); install it: pip install tensorrt --extra-index-url https://pypi.nvidia.com (on a machine "
        "with an NVIDIA GPU and driver; on Jetson, TensorRT comes with JetPack). TensorRT-RTX builds only for sm_75, "
        "sm_80, sm_86, sm_89, sm_120, sm_121, not Hopper (sm_90), Jetson Orin (sm_87) or data-centre Blackwell "
        "(sm_100); for RTX-class GPUs compile with --target rtx\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_without_any_tensorrt_the_refusal_says_what_to_install(tmp_path):
    """Both packages blocked from importing (as on a machine where the wheels could not install)."""
    path = _save(tiny_model(), tmp_path / "m.onnx")
    script = textwrap.dedent("""
        import sys
        for name in ("tensorrt", "tensorrt_rtx_bindings", "tensorrt_rtx"):
            sys.modules[name] = None
        from edgec.cli import main
        for target in ("rtx", "cuda-sm_86"):
            main(["compile", sys.argv[1], "--backend", "tensorrt", "--target", target, "-o", sys.argv[2]])
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "m.edgec")], capture_output=True,
                          text=True, timeout=300)
    hint = ("pip install tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings (x86-64 Linux; `make setup` installs the "
            "versions requirements.lock pins)")
    assert proc.stderr.splitlines() == [
        "edgec: error: TensorRT-RTX is not importable here (import of tensorrt_rtx_bindings halted; None in "
        f"sys.modules); install it: {hint}",
        "edgec: error: the tensorrt backend needs TensorRT or TensorRT-RTX for target 'cuda-sm_86', and neither is "
        f"importable here; install TensorRT-RTX (builds without a GPU): {hint}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# --- the runtime, before TensorRT sees the plan -------------------------------------------------------

@pytest.mark.skipif(not NO_GPU, reason="this host has an NVIDIA GPU")
def test_without_a_gpu_loading_names_the_compute_capabilities(lenet_builds):
    path = lenet_builds["fp32"].path
    with pytest.raises(ArtifactError) as info:
        rt.load(path, device="cuda")
    assert str(info.value) == (f"{path}: compiled for an NVIDIA GPU of compute capability 8.0, 8.6, 8.9 or 12.0 "
                               "(target 'rtx'), but this host has no NVIDIA GPU (the CUDA runtime and nvidia-smi see "
                               "none); run it on a machine with such a GPU")
    with pytest.raises(ArtifactError, match="compiled for cuda \\(target 'rtx'\\), and this host has no NVIDIA GPU"):
        rt.load(path, device="cpu")  # the host, not the device argument, is what cannot run it


def test_the_plan_header_decides_which_gpus_run_it(lenet_builds):
    manifest, files = read_artifact(lenet_builds["fp32"].path)
    header = read_header(files["model.plan"])
    config = manifest["backend_config"]
    assert gpu_mismatch(config, header, "cuda:0", "8.6") is None
    assert gpu_mismatch(config, header, "cuda:0", "9.0") == (
        "the TensorRT-RTX plan holds code for compute capability 8.0, 8.6, 8.9, 12.0, but cuda:0 is 9.0; recompile "
        "it for this GPU: `edgec compile --backend tensorrt --target cuda-sm_90`")
    full = {"tensorrt": {"flavour": "full", "version": "10.13.0.35", "compute_capabilities": ["9.0"]}}
    assert gpu_mismatch(full, None, "cuda", "9.0") is None
    assert gpu_mismatch(full, None, "cuda", "8.6") == (
        "the TensorRT plan was built for compute capability 9.0, but cuda is 8.6; recompile it with `edgec compile "
        "--backend tensorrt` on this GPU")
    assert gpu_mismatch(dict(full, hardware_compatibility="ampere_plus"), None, "cuda", "8.6") is None


@pytest.mark.parametrize("case, edit, message", [
    ("truncated", lambda m, plan: (m, plan[:-100]),
     "the TensorRT-RTX plan is {short} bytes but its header says {size}; recompile it with `edgec compile --backend "
     "tensorrt`"),
    ("not a plan", lambda m, plan: (m, b"\0" * 64),
     "the payload 'model.plan' is not a TensorRT-RTX plan (no b'vtrt' header); recompile it with `edgec compile "
     "--backend tensorrt`"),
    ("other version", lambda m, plan: (dict(m, backend_config=dict(m["backend_config"], tensorrt=dict(
        m["backend_config"]["tensorrt"], version="1.6.0.1"))), plan),
     "the TensorRT-RTX plan's header says version {version} but the manifest 1.6.0.1; recompile it with `edgec "
     "compile --backend tensorrt`"),
])
def test_a_broken_plan_is_refused_before_the_gpu_is_looked_for(lenet_builds, tmp_path, case, edit, message):
    manifest, files = read_artifact(lenet_builds["fp32"].path)
    plan = files["model.plan"]
    changed, new_plan = edit(manifest, plan)
    path = tmp_path / "m.edgec"
    write_artifact(path, changed, {"model.plan": new_plan})  # hashes consistent: the plan itself is wrong
    with pytest.raises(ArtifactError) as info:
        rt.load(path, device="cuda")
    assert str(info.value) == f"{path}: " + message.format(short=len(plan) - 100, size=len(plan),
                                                           version=trt.__version__)


# --- inspect and report ------------------------------------------------------------------------------

def test_inspect_shows_the_engine(lenet_builds):
    proc = run_edgec("inspect", lenet_builds["fp32"].path, check=True)
    lines = " ".join(proc.stdout.split())
    assert (f"TensorRT-RTX {trt.__version__} plan: 530.8 KiB (weights 241.7 KiB, embedded), for compute capability "
            "8.0, 8.6, 8.9, 12.0") in lines
    assert ("engine: 10 layers from 12 ONNX nodes; fused: /0/Conv+/1/Sigmoid, /3/Conv+/4/Sigmoid, /7/Gemm+/8/Sigmoid, "
            "/9/Gemm+/10/Sigmoid; folded away: none") in lines


def test_report_row_says_what_was_built_and_why_it_did_not_run(tmp_path):
    from edgec.report.evaluate import evaluate

    result = evaluate("lenet", ["rtx"], ["fp16"], "digits", tmp_path, ["tensorrt"], warmup=1, iters=2)
    (row,) = [r for r in result["rows"] if r["backend"] == "tensorrt"]
    assert (row["target"], row["precision"]) == ("rtx", "fp16")
    assert row["artifact_bytes"] > 0 and row["compile_s"] > 0
    assert row["note"].startswith(f"TensorRT-RTX {trt.__version__} plan: 412.2 KiB (weights 121.7 KiB, embedded), "
                                  "for compute capability 8.0, 8.6, 8.9, 12.0; built in ")
    assert "; engine: 10 layers from 14 ONNX nodes; fused: " in row["note"]
    if NO_GPU:
        assert row["status"] == "unsupported"
        assert row["note"].endswith("; compiled; not runnable here: this host has no NVIDIA GPU")


# --- the whole zoo (make test-slow) ---------------------------------------------------------------------

def _zoo():
    from edgec.zoo.registry import ZOO

    return list(ZOO)


@pytest.mark.slow
@pytest.mark.parametrize("name", _zoo())
def test_every_zoo_network_builds_fp32_and_fp16(tmp_path, name):
    from edgec.frontend.export import export_onnx, resolve_exportable

    net, shape, outputs = resolve_exportable(name)
    path = export_onnx(net, shape, tmp_path / f"{name}.onnx", output_names=outputs)
    sizes = {}
    for precision in ("fp32", "fp16"):
        result = compile_model(path, "rtx", tmp_path / f"{precision}.edgec", backend="tensorrt", precision=precision)
        _, files = read_artifact(result.path)
        header = read_header(files["model.plan"])
        assert (header.version, header.compute_capabilities) == (trt.__version__, PORTABLE)
        sizes[precision] = header.weights_bytes
        hosted = [n["runs_on"] for n in (result.manifest.get("nms") or {}).get("nodes", [])]
        assert hosted == (["host"] if name == "detector" else [])
    assert sizes["fp16"] < 0.6 * sizes["fp32"]  # fp16 weights: half, plus what stays fp32
