"""A new user's first hour (issue 22): each friction found on a fresh clone, as a test of what the CLI does now.

The numbered comments match the issue's list. Commands run in-process through `edgec.cli.main` where the
output is what matters, in a subprocess where imports or a terminal are what matter.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.cli import main
from tests.conftest import EDGEC, REPO, run_edgec

HEAVY = ("torch", "tvm", "tvm_ffi", "onnxruntime")


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _imports_of(*argv) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, stderr) of `edgec ARGV` in a fresh interpreter."""
    code = (f"import sys\nfrom edgec.cli import main\nrc = main({[str(a) for a in argv]!r})\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"')), proc.stderr


def _symbolic_hw_model(path: Path) -> Path:
    """Conv 3x3 -> GlobalAveragePool -> Flatten -> Gemm on input [N, 1, H, W]: any image size."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "G")]
    nodes = [helper.make_node("Conv", ["input", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "G"], ["output"], transB=1)]
    graph = helper.make_graph(nodes, "hw", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                          ["N", 1, "H", "W"])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


# 1. tune on symbolic shapes says what to add, exits non-zero, writes nothing
def test_tune_on_symbolic_shapes_names_the_input_shape_to_add(lenet_onnx, tmp_path, capsys):
    code, _, err = _cli(capsys, "tune", lenet_onnx, "--target", "x86-64-avx2", "--trials", "4",
                        "--tuning-db", tmp_path / "tuning")
    assert code == 2
    assert "kernels have symbolic shapes, and tuning measures fixed ones: add --input-shape input=1x1x28x28 to " \
           "`edgec tune`, and the same to `edgec compile`" in err
    assert not (tmp_path / "tuning").exists()


def test_tune_reports_a_kernel_without_measured_candidates_in_words(lenet_onnx, tmp_path, capsys, monkeypatch):
    from edgec.backends.tvm.tuning.search import tuner

    report = tuner.TuneReport("x86-64-avx2", str(tmp_path), 1, tuned=[{"task": "fused_conv2d", "rules_ms": 0.05,
                                                                       "best_ms": None, "trials": 0}])
    monkeypatch.setattr(tuner, "tune_model", lambda *args, **kwargs: report)
    code, out, _ = _cli(capsys, "tune", lenet_onnx, "--target", "x86-64-avx2", "--trials", "4", "--tuning-db",
                        tmp_path)
    assert code == 0 and "tuned None" not in out
    assert "fused_conv2d: rules 0.05 ms, no candidate measured (0 trials: raise --trials) -> rules" in out


# 2. report measures what it can: aarch64 under qemu, CUDA compiled but "not runnable here"; always written
@pytest.mark.skipif(not any(Path(d, "qemu-aarch64-static").exists() for d in os.environ["PATH"].split(":")),
                    reason="needs qemu-aarch64-static (make toolchain-aarch64)")
def test_report_runs_aarch64_rows_emulated_and_keeps_cuda_rows_with_their_compile_figures(lenet_onnx, tmp_path):
    out = tmp_path / "report"
    proc = run_edgec("report", lenet_onnx, "--targets", "cpu,aarch64,cuda-sm_90", "--backends", "tvm",
                     "--iters", "5", "-o", out)
    assert proc.returncode == 0, proc.stderr
    rows = {r["target"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    a64, cpu, cuda = rows["aarch64"], rows["cpu"], rows["cuda-sm_90"]
    assert a64["status"] == "ok" and a64["accuracy"] == cpu["accuracy"] and a64["max_abs_err"] < 1e-4
    assert "qemu-user" in a64["note"] and "not a board's" in a64["note"] and a64["latency_ms"]["p50"] > 0
    assert cuda["status"] == "unsupported" and cuda["note"] == "compiled; not runnable here: this host has no " \
                                                               "NVIDIA GPU"
    assert cuda["artifact_bytes"] > 0 and cuda["compile_s"] > 0 and cuda["latency_ms"] is None


# 3. --input-shape keeps a named dim symbolic; bench says what it fed
def test_input_shape_with_a_named_dim_keeps_it_symbolic(tmp_path, capsys):
    model = _symbolic_hw_model(tmp_path / "hw.onnx")
    code, out, err = _cli(capsys, "compile", model, "--target", "cpu", "--backend", "ort", "--input-shape",
                          "input=Nx1x32x32", "-o", tmp_path / "hw.edgec", "--json")
    assert code == 0, err
    assert json.loads(out)["inputs"][0]["shape"] == ["N", 1, 32, 32]


def test_bench_says_which_sizes_it_fed_to_symbolic_dims(tmp_path, capsys):
    model = _symbolic_hw_model(tmp_path / "hw.onnx")
    assert _cli(capsys, "compile", model, "--target", "cpu", "--backend", "ort", "-o", tmp_path / "hw.edgec")[0] == 0
    code, out, _ = _cli(capsys, "bench", tmp_path / "hw.edgec", "--batch", "4", "--iters", "3")
    assert code == 0 and ("inputs: input 4x1x1x1 (symbolic Nx1xHxW); symbolic dims other than the batch took 1: "
                          "set them with --input-shape NAME=DIMS") in out
    code, out, _ = _cli(capsys, "bench", tmp_path / "hw.edgec", "--input-shape", "input=2x1x16x24", "--iters", "3",
                        "--json")
    assert code == 0 and json.loads(out)["input_shapes"] == {"input": [2, 1, 16, 24]}


# 4. long steps show progress on a terminal: compile's stages, bench's load
def test_compile_shows_its_stages_on_a_terminal(lenet_onnx, tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen([*EDGEC, "compile", str(lenet_onnx), "--target", "cpu", "-o", str(tmp_path / "l.edgec")],
                            stdout=subprocess.PIPE, stderr=slave, env=dict(os.environ, PYTHONPATH=str(REPO),
                                                                             COLUMNS="200"))
    os.close(slave)
    seen = b""
    while proc.poll() is None or select.select([master], [], [], 0.1)[0]:
        if select.select([master], [], [], 0.1)[0]:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
    os.close(master)
    assert proc.wait(timeout=600) == 0
    screen = seen.decode(errors="replace")  # rich redraws ~10 times a second: stages of a second or more show
    assert "compile lenet.onnx for cpu: build" in screen and "0:00:0" in screen, screen[-2000:]


def test_compile_reports_each_stage_to_a_callback(lenet_onnx, tmp_path):
    from edgec.compiler import compile_model

    seen = []
    result = compile_model(lenet_onnx, "cpu", tmp_path / "l.edgec", progress=seen.append)
    assert seen == ["toolchain", "load", "passes", "nms", "tvm", "import", "schedule", "build", "link", "package"]
    assert list(result.stages) == [s for s in seen if s != "toolchain"]


# 5. one definition of compile s: load to artifact, toolchain imports excluded, printed with its parts
def test_compile_seconds_are_the_stages_without_the_toolchain_import(lenet_onnx, tmp_path):
    proc = run_edgec("compile", lenet_onnx, "--target", "cpu", "--backend", "ort", "-o", tmp_path / "l.edgec")
    assert proc.returncode == 0
    line = proc.stdout.strip().splitlines()[-1]
    assert " in " in line and "passes " in line and "importing the toolchain, once per process" in line
    from edgec.compiler import compile_model

    result = compile_model(lenet_onnx, "cpu", tmp_path / "l2.edgec", backend="ort")
    assert result.seconds == pytest.approx(sum(result.stages.values()), abs=2e-3) and "toolchain" not in result.stages


# 6. plain inspect shows the int8 accuracy and the CPU features an artifact needs
def test_inspect_shows_required_cpu_features_and_int8_accuracy(lenet_onnx, tmp_path, capsys):
    from edgec.compiler import compile_model
    from edgec.quantize.pipeline import Int8Options

    int8 = compile_model(lenet_onnx, "cpu", tmp_path / "l8.edgec", backend="ort", precision="int8",
                         int8=Int8Options(calib="digits", max_accuracy_drop=1.0)).path
    code, out, _ = _cli(capsys, "inspect", int8)
    assert code == 0 and "accuracy budget 1 points: fp32 " in out and "validation samples" in out
    assert "needs CPU features: none beyond the architecture (x86_64)" in out
    tvm = compile_model(lenet_onnx, "x86-64-avx2", tmp_path / "l.edgec").path
    code, out, _ = _cli(capsys, "inspect", tvm)
    assert "needs CPU features: sse4_2, avx, avx2, fma, f16c, bmi2 (x86_64)" in out


# 7. every hint names a command or option that exists
def test_inspect_takes_the_input_shape_its_hints_name(lenet_onnx, capsys):
    code, out, _ = _cli(capsys, "inspect", lenet_onnx, "--input-shape", "input=2x1x28x28", "--json")
    assert code == 0 and json.loads(out)["inputs"][0]["shape"] == [2, 1, 28, 28]


def test_an_aarch64_artifact_on_this_host_points_at_emulation(lenet_onnx, tmp_path, capsys):
    from edgec.compiler import compile_model

    path = compile_model(lenet_onnx, "aarch64", tmp_path / "a64.edgec").path
    code, _, err = _cli(capsys, "bench", path, "--iters", "1")
    assert code == 2 and f"run it here under emulation with `edgec bench {path} --emulate`" in err


def test_a_bare_zoo_name_gets_the_export_command_at_once():
    code, heavy, err = _imports_of("compile", "lenet", "--target", "cpu", "-o", "x.edgec")
    assert code == 2 and heavy == []
    assert err.strip() == ("edgec: error: lenet: no such file; to compile a zoo network, export it first: `edgec zoo "
                           "export lenet -o lenet.onnx` (`edgec zoo list` lists them)")


# 8. --debug anywhere on the line
def test_debug_after_the_subcommand_shows_the_traceback(tmp_path, capsys):
    code, _, err = _cli(capsys, "optimize", tmp_path / "missing.onnx", "-o", tmp_path / "o.onnx", "--debug")
    assert code == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == f"edgec: error: {tmp_path / 'missing.onnx'}: no such file"


# 9. a dataset whose labels the model cannot output is an error; the ONNX reference row is called ort
def test_report_refuses_a_five_class_model_on_ten_class_digits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    graph = helper.make_graph([helper.make_node("Flatten", ["input"], ["f"]),
                               helper.make_node("Gemm", ["f", "W"], ["logits"], transB=1)], "five",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(rng.standard_normal((5, 64)).astype(np.float32), "W")])
    path = tmp_path / "my5class.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    code, _, err = _cli(capsys, "report", path, "--backends", "ort", "--iters", "2", "-o", tmp_path / "r")
    assert code == 2 and err.strip() == ("edgec: error: my5class: the model outputs 5 classes, but the digits labels "
                                         "go up to 9: its accuracy would mean nothing; pass --dataset DATA.npz with "
                                         "labels 0..4")


def test_the_onnx_reference_row_is_called_ort(lenet_onnx, tmp_path, capsys):
    code, _, _ = _cli(capsys, "report", lenet_onnx, "--backends", "ort", "--iters", "2", "-o", tmp_path / "r")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert code == 0 and report["rows"][0]["backend"] == "ort" and report["reference"]["framework"] == "ort"


# 10. rough edges
def test_an_artifact_is_not_written_under_an_onnx_name(lenet_onnx, tmp_path):
    code, heavy, err = _imports_of("compile", lenet_onnx, "--target", "cpu", "-o", tmp_path / "t.onnx")
    assert code == 2 and heavy == [] and not (tmp_path / "t.onnx").exists()
    assert "an artifact is a .edgec zip (manifest + payload), not ONNX; name it" in err


def test_compare_exits_1_on_divergence_and_says_what_it_wrote(lenet_onnx, tmp_path, capsys):
    model = onnx.load(lenet_onnx)
    weight = next(t for t in model.graph.initializer if t.name == "3.weight")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, weight.name))
    onnx.save(model, tmp_path / "copy.onnx")
    code, out, err = _cli(capsys, "compare", tmp_path / "copy.onnx", "--reference", lenet_onnx, "--backends", "ort,ort",
                          "--samples", "2", "-o", tmp_path / "cmp")
    assert code == 1 and "first divergent: tensor '/3/Conv_output_0'" in out
    assert f"wrote {tmp_path / 'cmp' / 'compare.json'}, compare.html and error_by_layer.png" in out
    assert err.strip().startswith("edgec: error: ") and "diverges beyond tolerance" in err


@pytest.mark.parametrize("argv", [["bench", "model.edgec", "--iters", "0"], ["bench", "model.edgec", "--batch", "0"],
                                  ["compile", "m.onnx", "--target", "cpux", "-o", "x.edgec"],
                                  ["export", "lenet", "--opset", "3", "-o", "x.onnx"],
                                  ["export", "lenet", "--input-shape", "28by28", "-o", "x.onnx"],
                                  ["tune", "m.onnx", "--target", "cpu", "--trials", "0", "--tuning-db", "d"],
                                  ["bench", "model.edgec", "--rpc-tracker", "nohost", "--rpc-key", "k"],
                                  ["bench", "model.edgec", "--rpc-tracker", "127.0.0.1:9190"],
                                  ["report", "lenet", "--rpc-key", "rpi4", "-o", "r"],
                                  ["tune", "m.onnx", "--target", "aarch64", "--tuning-db", "d", "--rpc-tracker",
                                   "h:1", "--rpc-key", "k", "--rpc-timeout", "0"],
                                  ["board", "serve", "--tracker", "127.0.0.1:9190"],
                                  ["board", "list", "--tracker", "127.0.0.1"]])
def test_argument_errors_come_before_any_heavy_import(argv):
    code, heavy, err = _imports_of(*argv)
    assert code == 2 and heavy == [] and err.startswith("edgec: error: ")


@pytest.mark.parametrize("command", ["export", "optimize", "compile", "bench", "report", "inspect", "compare",
                                     "tune", "zoo", "board", "board serve", "board list"])
def test_help_imports_no_toolchain(command):
    code, heavy, _ = _imports_of(*command.split(), "--help")
    assert code == 0 and heavy == []


def test_export_says_the_batch_is_symbolic(tmp_path, capsys):
    code, out, _ = _cli(capsys, "export", "lenet", "-o", tmp_path / "l.onnx")
    assert code == 0 and "input batchx1x28x28: batch symbolic, traced at 1x1x28x28" in out


def test_zoo_list_names_each_metric_and_the_readme_lists_every_network(capsys):
    code, out, _ = _cli(capsys, "zoo", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["lenet"]["held_out"] == "96.11% top-1"
    assert rows["detector-raw"]["held_out"].startswith("mAP@0.5 0.81")
    assert rows["fcn"]["held_out"].startswith("98.76% of pixels, mIoU 0.95")
    readme = (REPO / "README.md").read_text()
    assert all(f"| `{name}` |" in readme for name in rows)


def test_readme_tables_are_generated_and_current():
    proc = subprocess.run([sys.executable, "benchmarks/readme_tables.py", "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    readme = (REPO / "README.md").read_text()
    assert "<!-- readme_tables: demo -->" in readme and "benchmarks/readme_tables.py" in readme
