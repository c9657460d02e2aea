"""The CLI end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import run_edgec


def _one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{proc.stderr}"
    assert lines[0].startswith("edgec: error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_console_script_help():
    script = Path(sys.executable).parent / "edgec"
    assert script.exists(), "the `edgec` console script is not installed in this environment"
    import subprocess

    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("export", "optimize", "compile", "bench", "report", "inspect", "zoo"):
        assert command in proc.stdout


@pytest.mark.parametrize("command", ["export", "optimize", "compile", "bench", "report", "inspect", "zoo"])
def test_every_command_has_help(command):
    proc = run_edgec(command, "--help")
    assert proc.returncode == 0 and "Usage: edgec" in proc.stdout


def test_export_compile_inspect_bench(tmp_path):
    onnx_path = tmp_path / "lenet.onnx"
    proc = run_edgec("export", "lenet", "-o", onnx_path, check=True)
    assert "wrote" in proc.stdout and onnx.load(onnx_path).graph.input[0].name == "input"

    proc = run_edgec("inspect", onnx_path, "--json", check=True)
    info = json.loads(proc.stdout)
    assert info["ops"] == {"Gemm": 3, "Sigmoid": 4, "AveragePool": 2, "Conv": 2, "Flatten": 1}
    assert info["parameters"] == 61706 and info["inputs"][0]["shape"] == ["batch", 1, 28, 28]

    artifact = tmp_path / "lenet.edgec"
    proc = run_edgec("compile", onnx_path, "--target", "cpu", "--input-shape", "input=1x1x28x28", "-o", artifact,
                     check=True)
    assert "wrote" in proc.stdout
    manifest = json.loads(run_edgec("inspect", artifact, "--json", check=True).stdout)["manifest"]
    assert manifest["inputs"] == [{"name": "input", "shape": [1, 1, 28, 28], "dtype": "float32"}]
    assert manifest["target"]["name"] == "cpu" and manifest["backend"] == "tvm"

    proc = run_edgec("bench", artifact, "--iters", "20", "--warmup", "2", "--json", check=True)
    result = json.loads(proc.stdout)
    assert set(result) == {"artifact", "backend", "target", "precision", "device", "batch", "iters", "latency_ms",
                           "throughput_per_s", "peak_rss_mb", "input_shapes"}  # the contract's keys + what was fed
    assert result["input_shapes"] == {"input": [1, 1, 28, 28]}
    assert set(result["latency_ms"]) == {"mean", "p50", "p90", "p99", "min", "max"}
    lat = result["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["iters"] == 20 and result["batch"] == 1 and result["peak_rss_mb"] > 10
    assert result["throughput_per_s"] == pytest.approx(1e3 / lat["mean"])
    assert proc.stderr == ""  # no progress bar in --json mode


def test_inspect_names_the_tvm_target_only_for_tvm_artifacts(lenet_artifacts):
    tvm_text = run_edgec("inspect", lenet_artifacts["tvm"], check=True).stdout
    ort_text = run_edgec("inspect", lenet_artifacts["ort"], check=True).stdout
    assert "TVM target: {" in tvm_text and "TVM target" not in ort_text and "ort artifact" in ort_text


def test_bench_batch_on_symbolic_batch(lenet_artifacts):
    result = json.loads(run_edgec("bench", lenet_artifacts["ort"], "--iters", "5", "--batch", "8", "--json",
                                  check=True).stdout)
    assert result["batch"] == 8 and result["throughput_per_s"] == pytest.approx(8e3 / result["latency_ms"]["mean"])


def test_bench_batch_on_fixed_batch_artifact_is_refused(tmp_path, lenet_onnx):
    artifact = tmp_path / "b1.edgec"
    run_edgec("compile", lenet_onnx, "--target", "cpu", "--backend", "ort", "--input-shape", "1x1x28x28",
              "-o", artifact, check=True)
    proc = run_edgec("bench", artifact, "--batch", "4")
    assert proc.returncode == 2
    assert _one_error_line(proc) == ("edgec: error: input 'input' was compiled with a fixed batch of 1; --batch 4 "
                                     "needs an artifact compiled with --input-shape input=4x1x28x28")


def test_report_writes_contract_files(tmp_path):
    out = tmp_path / "report"
    proc = run_edgec("report", "lenet", "--targets", "cpu,x86-64-avx512", "--precisions", "fp32,int8",
                     "--dataset", "digits", "--iters", "20", "-o", out, check=True)
    assert "| tvm | cpu | fp32 | ok |" in proc.stdout
    for name in ("report.json", "report.md", "report.html", "latency_vs_accuracy.png", "latency_by_backend.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"model", "dataset", "n_eval", "host", "edgec_version", "reference", "rows"}
    assert report["model"] == "lenet" and report["dataset"] == "digits" and report["n_eval"] == 360
    assert report["reference"]["framework"] == "pytorch" and report["reference"]["accuracy"] >= 0.95
    rows = {(r["backend"], r["target"], r["precision"]): r for r in report["rows"]}
    for backend in ("tvm", "ort"):
        row = rows[(backend, "cpu", "fp32")]
        assert row["status"] == "ok", row["note"]
        assert row["top1_agreement"] == 1.0 and row["max_abs_err"] < 1e-4
        assert row["accuracy"] == report["reference"]["accuracy"]
        assert row["latency_ms"]["p50"] > 0 and row["artifact_bytes"] > 0 and row["compile_s"] > 0
    int8 = rows[("ort", "cpu", "int8")]  # calibrated on digits' training split, measured on the held-out one
    assert int8["status"] == "ok" and "minmax calibration on 64 samples" in int8["note"]
    assert report["reference"]["accuracy"] - int8["accuracy"] <= 0.01 and int8["top1_agreement"] >= 0.97
    tvm_int8 = rows[("tvm", "cpu", "int8")]  # integer kernels (rewrites.integer_qdq), same QDQ model
    assert tvm_int8["status"] == "ok", tvm_int8["note"]
    assert report["reference"]["accuracy"] - tvm_int8["accuracy"] <= 0.01
    avx512 = rows[("tvm", "x86-64-avx512", "fp32")]
    if "avx512f" in report["host"]["cpu_features"]:
        assert avx512["status"] == "ok"
    else:  # compiled, but this host cannot run AVX-512 code: said so, with no invented numbers
        assert avx512["status"] == "unsupported" and "lacks" in avx512["note"] and avx512["latency_ms"] is None
        assert avx512["artifact_bytes"] > 0
    assert rows[("pytorch", "cpu", "fp32")]["note"] == "reference"
    assert (out / "artifacts" / "lenet-tvm-cpu-fp32.edgec").exists()


def test_report_on_onnx_file_uses_the_ort_reference(tmp_path, lenet_onnx):
    from edgec.zoo import data

    split = data.digits(28, 1)
    npz = tmp_path / "eval.npz"
    np.savez(npz, x=split.x_test[:40], y=split.y_test[:40])
    proc = run_edgec("report", lenet_onnx, "--backends", "ort", "--dataset", npz, "--iters", "5", "-o",
                     tmp_path / "r", check=True)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["reference"]["framework"] == "ort" and report["n_eval"] == 40
    assert [r["backend"] for r in report["rows"]] == ["ort", "ort"] and report["rows"][0]["note"] == "reference"
    assert report["rows"][1]["max_abs_err"] < 1e-4, proc.stdout


def test_zoo_list_and_export(tmp_path):
    rows = json.loads(run_edgec("zoo", "list", "--json", check=True).stdout)
    lenet = next(r for r in rows if r["name"] == "lenet")
    assert lenet["test_accuracy"] >= 0.95 and lenet["input_shape"] == [1, 1, 28, 28]
    out = tmp_path / "z.onnx"
    run_edgec("zoo", "export", "lenet-relu", "-o", out, check=True)
    assert {n.op_type for n in onnx.load(out).graph.node} >= {"Relu", "MaxPool"}


def test_optimize_writes_model_and_records(tmp_path, lenet_onnx):
    out = tmp_path / "opt.onnx"
    proc = run_edgec("optimize", lenet_onnx, "-o", out, "--json", check=True)
    records = json.loads(proc.stdout)["passes"]
    assert records and all({"name", "nodes_before", "nodes_after"} <= set(r) for r in records)
    assert len(onnx.load(out).graph.node) == records[-1]["nodes_after"]


@pytest.mark.parametrize("args, expected", [
    (("compile", "missing.onnx", "--target", "cpu", "-o", "x.edgec"), "edgec: error: missing.onnx: no such file"),
    (("compile", "LENET", "--target", "cpux", "-o", "x.edgec"),
     "edgec: error: unknown target 'cpux'; known targets: cpu, x86-64-avx2, x86-64-avx512, x86-64-avx512-bf16, "
     "aarch64, aarch64-cortex-a72, aarch64-cortex-a76, jetson-orin-cpu, jetson-orin, rtx, cuda, cuda-sm_XX"),
    (("compile", "LENET", "--target", "cpu", "--precision", "fp8", "-o", "x.edgec"),
     "edgec: error: Invalid value for '--precision': 'fp8' is not one of 'fp32', 'fp16', 'bf16', 'int8'. (see --help)"),
    (("compile", "LENET", "--target", "cpu", "--input-shape", "input=1x-3x28", "-o", "x.edgec"),
     "edgec: error: --input-shape '1x-3x28': expected positive integers or dim names joined by 'x', e.g. "
     "1x3x224x224 or Nx3x224x224"),
    (("compile", "LENET", "--target", "cpu", "--input-shape", "image=1x1x28x28", "-o", "x.edgec"),
     "edgec: error: LENET: --input-shape names 'image', but the model's inputs are input"),
    (("compile", "LENET", "--target", "cpu", "--precision", "int8", "-o", "x.edgec"),
     "edgec: error: --precision int8 needs calibration data: add --calib digits or --calib DATA.npz"),
    (("bench", "missing.edgec"),
     "edgec: error: missing.edgec: no such artifact file (create one with `edgec compile`)"),
    (("export", "nosuchmodel", "-o", "x.onnx"),
     "edgec: error: unknown zoo model 'nosuchmodel'; known: ZOO; or pass MODULE:CALLABLE returning a torch.nn.Module"),
    (("frobnicate",), "edgec: error: No such command 'frobnicate'. (see --help)"),
])
def test_errors_are_one_line_exit_2_and_leave_nothing(tmp_path, lenet_onnx, args, expected):
    from edgec.zoo.registry import ZOO

    args = [str(lenet_onnx) if a == "LENET" else a for a in args]
    proc = run_edgec(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    expected = expected.replace("LENET", str(lenet_onnx)).replace("ZOO", ", ".join(ZOO))
    assert _one_error_line(proc) == expected
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


@pytest.mark.parametrize("content, expected", [
    (b"", "file is empty; expected an ONNX model (export one with `edgec export`)"),
    (b"\xff\x00garbage" * 20, "not a valid ONNX model"),
])
def test_bad_onnx_files(tmp_path, content, expected):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    proc = run_edgec("compile", bad, "--target", "cpu", "-o", tmp_path / "out.edgec")
    assert proc.returncode == 2 and expected in _one_error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_truncated_onnx(tmp_path, lenet_onnx):
    data = lenet_onnx.read_bytes()
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(data[: len(data) // 2])
    proc = run_edgec("compile", bad, "--target", "cpu", "-o", tmp_path / "out.edgec")
    assert proc.returncode == 2 and str(bad) in _one_error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trunc.onnx"]


def test_debug_shows_traceback(tmp_path):
    proc = run_edgec("--debug", "compile", "missing.onnx", "--target", "cpu", "-o", "x.edgec", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "edgec: error: missing.onnx: no such file"


def test_compile_json_reports_each_stage_time_outside_the_artifact(lenet_onnx, tmp_path):
    out = json.loads(run_edgec("compile", lenet_onnx, "--target", "cpu", "-o", tmp_path / "a.edgec", "--json",
                               check=True).stdout)
    times = out.pop("compile")
    assert list(times["stages_s"])[:2] == ["load", "passes"] and list(times["stages_s"])[-1] == "package"
    assert {"import", "schedule", "build", "link"} <= set(times["stages_s"])
    assert abs(sum(times["stages_s"].values()) - times["seconds"]) < 0.01 and times["toolchain_import_s"] >= 0
    with zipfile.ZipFile(tmp_path / "a.edgec") as z:
        manifest = json.loads(z.read("manifest.json"))
    assert "compile" not in manifest and out["files"] == manifest["files"]


def test_export_with_either_exporter_compiles_to_the_same_numbers(tmp_path):
    import edgec.runtime as rt

    outputs = {}
    for exporter, opset in (("dynamo", 18), ("torchscript", 17)):
        path = tmp_path / f"lenet.{exporter}.onnx"
        proc = run_edgec("export", "lenet", "--exporter", exporter, "-o", path, check=True)
        assert proc.stdout.strip().endswith(f"{exporter} exporter, opset {opset})") and proc.stderr == ""
        assert onnx.load(path).opset_import[0].version == opset
        assert sorted(p.name for p in tmp_path.iterdir() if exporter in p.name) == [path.name]  # weights inside
        run_edgec("compile", path, "--target", "cpu", "-o", tmp_path / f"{exporter}.edgec", check=True)
        x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
        outputs[exporter] = rt.load(tmp_path / f"{exporter}.edgec")(x)[0]
    np.testing.assert_allclose(outputs["dynamo"], outputs["torchscript"], rtol=0, atol=1e-5)
    proc = run_edgec("export", "detector", "--exporter", "dynamo", "-o", tmp_path / "d.onnx")
    assert proc.returncode == 2 and not (tmp_path / "d.onnx").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # nor its temporary weights
    assert proc.stderr.startswith("edgec: error: PyTorch's dynamo exporter could not export the model at "
                                  "input=1x3x64x64: ") and proc.stderr.rstrip().endswith("try --exporter torchscript")
