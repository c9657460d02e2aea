"""Issue 20: boards over TVM RPC, on loopback. One farm per module: TVM's tracker on 127.0.0.1, an x86-64 board
served natively (`edgec board serve`) and an aarch64 board in the emulated arm64 userland under qemu-user
(`python3 -m edgec.runtime.remote.board`, with only numpy, the TVM runtime and edgec.runtime installed, as on
a board). The qemu board takes 30-70 s to start. Every process is started in its own group and killed by it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import edgec.runtime as rt
from edgec.errors import EdgecError
from edgec.runtime.remote import run
from edgec.runtime.remote.session import BoardSpec
from edgec.runtime.remote.tracker import Tracker
from tests.conftest import REPO, needs_host_features, require_tool, run_edgec

os.environ.setdefault("EDGEC_CACHE_DIR", str(REPO / ".cache"))  # the emulated userland's cache, as test_aarch64

import edgec.emulate as emu  # noqa: E402
from edgec.emulate import userland  # noqa: E402

READY_S = 300  # the qemu board imports TVM under emulation: 30 s on a quiet host, over 60 s on a busy one
HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Farm:
    """The tracker and the boards this module started, their logs, and how to stop them."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}
        self.tracker = ""

    def spawn(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "w") as log:  # a file, not a pipe nobody drains
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def start_tracker(self) -> None:
        """TVM's tracker on a free port: it refuses port 0, so it gets a free base and searches from there."""
        base = _free_port()
        proc = self.spawn("tracker", [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", HOST, "--port",
                                      str(base), "--port-end", str(base + 100)], dict(os.environ))
        deadline = time.monotonic() + 120
        while " bind to " not in self.log("tracker"):  # TVM logs "... INFO bind to 127.0.0.1:PORT" once bound
            assert proc.poll() is None and time.monotonic() < deadline, self.log("tracker")[-2000:]
            time.sleep(0.2)
        self.tracker = self.log("tracker").split(" bind to ")[1].split()[0]

    def serve(self, key: str, argv_prefix: list[str], env: dict) -> None:
        port = _free_port()
        self.spawn(key, [*argv_prefix, "--tracker", self.tracker, "--key", key, "--host", HOST, "--port", str(port),
                         "--port-end", str(port + 100)], env)

    def wait_free(self, *keys: str, timeout: float = READY_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rows = {r["key"]: r for r in self.boards()}
            if all(rows.get(k, {}).get("free") for k in keys):
                return
            for k in keys:
                assert self.procs[k].poll() is None, f"board {k} exited:\n{self.log(k)[-3000:]}"
            assert time.monotonic() < deadline, f"boards {keys} not free after {timeout} s: {rows}"
            time.sleep(0.5)

    def boards(self) -> list[dict]:
        host, port = self.tracker.rsplit(":", 1)
        with Tracker((host, int(port)), 10) as t:
            return t.boards()

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the server and the session children it forked
        except ProcessLookupError:
            pass
        proc.wait(30)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    require_tool("qemu-aarch64-static", "qemu-user-static")
    pytest.importorskip("tornado", reason="TVM's RPC tracker needs tornado (pip install tornado)")
    try:
        arm64 = userland.prepare(metadata.version("apache-tvm"), metadata.version("apache-tvm-ffi"),
                                 metadata.version("numpy"))
    except emu.EmulationUnavailable as e:
        pytest.skip(f"no emulated arm64 userland: {e}")
    tmp = tmp_path_factory.mktemp("farm")
    farm = Farm(tmp)
    try:
        farm.start_tracker()
        board_app = emu.runtime_tree(tmp / "board")  # all of edgec a board installs
        farm.serve("aarch64", arm64.command(emu.qemu_cpu("generic"), "-m", "edgec.runtime.remote.board"),
                   arm64.env(board_app))
        farm.serve("x86", [sys.executable, "-m", "edgec.cli", "board", "serve"], dict(os.environ, PYTHONPATH=str(REPO)))
        farm.wait_free("x86", "aarch64")
        yield farm
    finally:
        farm.stop()


def test_board_list_shows_both_keys(farm):
    proc = run_edgec("board", "list", "--tracker", farm.tracker, "--json", check=True)
    keys = {r["key"]: r for r in json.loads(proc.stdout)["keys"]}
    assert sorted(keys) == ["aarch64", "x86"]
    assert all((r["boards"], r["free"], r["busy"]) == (1, 1, 0) for r in keys.values())
    assert all(r["addresses"][0].startswith(f"{HOST}:") for r in keys.values())
    text = run_edgec("board", "list", "--tracker", farm.tracker, check=True).stdout
    assert f"tracker {farm.tracker}: 2 board(s) under 2 key(s)" in text and "aarch64" in text and "x86" in text


def test_aarch64_lenet_on_the_aarch64_board_matches_the_x86_build(farm, lenet_aarch64, lenet_artifacts):
    proc = run_edgec("bench", lenet_aarch64, "--rpc-tracker", farm.tracker, "--rpc-key", "aarch64", "--warmup", "2",
                     "--iters", "20", "--reference", lenet_artifacts["tvm"], "--json", check=True)
    result = json.loads(proc.stdout)
    assert (result["device"], result["target"], result["backend"], result["iters"]) == ("rpc:aarch64", "aarch64",
                                                                                        "tvm", 20)
    board = result["board"]
    assert (board["arch"], board["emulated"], board["key"]) == ("aarch64", True, "aarch64")
    assert {"fp", "asimd"} <= set(board["cpu_features"]) and "asimddp" not in board["cpu_features"]  # Cortex-A53
    assert 0 < result["latency_ms"]["min"] <= result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["reference"]["max_abs_err"] <= 1e-5 and result["reference"]["target"] == "cpu"

    host, port = farm.tracker.rsplit(":", 1)  # the same through the library, outputs compared here
    out, outputs, feeds = run.bench(BoardSpec("aarch64", (host, int(port))).open(), str(lenet_aarch64), 1, 5)
    expected = rt.load(lenet_artifacts["tvm"]).run(feeds)["logits"]
    np.testing.assert_allclose(outputs[0], expected, rtol=0, atol=1e-5)


def test_an_x86_artifact_is_refused_by_the_aarch64_board_before_upload(farm, lenet_artifacts):
    x86 = lenet_artifacts["tvm"]
    proc = run_edgec("bench", x86, "--rpc-tracker", farm.tracker, "--rpc-key", "aarch64")
    address = {r["key"]: r for r in farm.boards()}["aarch64"]["addresses"][0]
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"edgec: error: {x86} (target 'cpu') cannot run on board 'aarch64' at {address}: its code is for x86_64 and "
        "the board is aarch64; refusing to upload it; compile it for the board (e.g. --target aarch64) or use a key "
        "whose boards are x86_64"]

    host, port = farm.tracker.rsplit(":", 1)
    board = BoardSpec("aarch64", (host, int(port))).open()
    session = board.session  # kept past the refusal, to look at the session's directory on the board
    with pytest.raises(EdgecError, match="refusing to upload it"):
        run.RemoteModule(board, str(x86))
    with pytest.raises(Exception, match=r"Cannot open .*/model\.so"):  # nothing was uploaded
        session.download("model.so")


def test_a_busy_key_fails_within_rpc_timeout(farm, lenet_artifacts):
    host, port = farm.tracker.rsplit(":", 1)
    held = BoardSpec("x86", (host, int(port))).open()  # the key's only board, busy
    start = time.monotonic()
    proc = run_edgec("bench", lenet_artifacts["tvm"], "--rpc-tracker", farm.tracker, "--rpc-key", "x86",
                     "--rpc-timeout", "3")
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"edgec: error: no board under key 'x86' on tracker {farm.tracker} came free within --rpc-timeout 3 s "
        "(1 registered, all busy); try again later or raise --rpc-timeout"]
    assert time.monotonic() - start < 30  # 3 s of waiting, the rest is the CLI starting
    held.close()
    farm.wait_free("x86", timeout=30)


def test_a_board_killed_mid_bench_fails_the_command_and_the_tracker_keeps_serving(farm, lenet_artifacts, tmp_path):
    farm.serve("doomed", [sys.executable, "-m", "edgec.cli", "board", "serve"], dict(os.environ, PYTHONPATH=str(REPO)))
    farm.wait_free("doomed", timeout=120)
    address = {r["key"]: r for r in farm.boards()}["doomed"]["addresses"][0]
    out = tmp_path / "bench.json"
    with open(out, "w") as stdout:
        bench = subprocess.Popen([sys.executable, "-m", "edgec.cli", "bench", str(lenet_artifacts["tvm"]),
                                  "--rpc-tracker", farm.tracker, "--rpc-key", "doomed", "--iters", "100000000",
                                  "--rpc-timeout", "30", "--json"], stdout=stdout, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, PYTHONPATH=str(REPO)))
        deadline = time.monotonic() + 120
        while not {r["key"]: r for r in farm.boards()}["doomed"]["busy"]:  # the bench holds the board
            assert bench.poll() is None and time.monotonic() < deadline, bench.stderr.read()
            time.sleep(0.2)
        time.sleep(3)  # into the timing (100M runs: hours)
        farm.kill("doomed")
        killed = time.monotonic()
        _, stderr = bench.communicate(timeout=60)
    assert bench.returncode == 1 and time.monotonic() - killed < 30, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"edgec: error: lost board 'doomed' at {address} while timing 100000000 runs (")
    assert "kShutdown" in lines[0] or "Connection reset" in lines[0]
    assert re.search(r"\); done: connected, uploaded model\.so \([0-9.]+ KiB\), loaded it in the board's VM, ran it, "
                     r"warmed up \(10 runs\); nothing was written$", lines[0]), lines[0]
    assert out.read_text() == ""
    deadline = time.monotonic() + 30
    while "doomed" in {r["key"] for r in farm.boards()}:  # the tracker drops it once its connection closes
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert sorted(r["key"] for r in farm.boards()) == ["aarch64", "x86"]
    proc = run_edgec("bench", lenet_artifacts["tvm"], "--rpc-tracker", farm.tracker, "--rpc-key", "x86", "--iters",
                     "10", "--json", check=True)
    assert json.loads(proc.stdout)["device"] == "rpc:x86"


def test_report_measures_the_rows_the_board_runs_there_and_says_where(farm, lenet_onnx, tmp_path):
    out = tmp_path / "report"
    run_edgec("report", lenet_onnx, "--targets", "cpu,aarch64", "--backends", "tvm", "--iters", "10",
              "--rpc-tracker", farm.tracker, "--rpc-key", "aarch64", "-o", out, check=True)
    report = json.loads((out / "report.json").read_text())
    rows = {r["target"]: r for r in report["rows"] if r["backend"] == "tvm"}
    address = {r["key"]: r for r in farm.boards()}["aarch64"]["addresses"][0]
    assert rows["aarch64"]["ran_on"] == f"rpc:aarch64 ({address})" and rows["cpu"]["ran_on"] == "host"
    assert rows["aarch64"]["status"] == "ok" and rows["aarch64"]["latency_ms"]["p50"] > 0
    assert rows["aarch64"]["accuracy"] == rows["cpu"]["accuracy"]
    assert abs(rows["aarch64"]["max_abs_err"] - rows["cpu"]["max_abs_err"]) <= 1e-5
    assert rows["aarch64"]["note"].startswith(f"measured on board 'aarch64' at {address} (aarch64, emulated by "
                                              "qemu-user: its latency is not a real board's)")
    assert report["board"]["arch"] == "aarch64" and report["board"]["address"] == address
    assert f"Board (TVM RPC): board 'aarch64' at {address} (aarch64, emulated by qemu-user" in \
        (out / "report.md").read_text()


def test_tune_measures_on_the_aarch64_board_and_compile_applies_the_database(farm, lenet_onnx, lenet_artifacts,
                                                                            tmp_path):
    db = tmp_path / "db"
    shape = ["--input-shape", "input=1x1x28x28"]
    proc = run_edgec("tune", lenet_onnx, "--target", "aarch64", "--trials", "8", "--tuning-db", db, *shape,
                     "--rpc-tracker", farm.tracker, "--rpc-key", "aarch64", "--json", check=True)
    report = json.loads(proc.stdout)
    assert report["measured_on"].startswith(f"1 board(s) under key 'aarch64' on tracker {farm.tracker} (first: "
                                            "board 'aarch64' at ")
    assert report["tuned"] and sum(k["trials"] for k in report["tuned"]) >= 8
    assert all(k["rules_ms"] > 0 for k in report["tuned"])  # every kernel measured on the board
    measured = [k for k in report["tuned"] if k["best_ms"] is not None]
    assert measured, report["tuned"]

    kernels_json = db / "aarch64" / "kernels.json"  # rules "took" 1 s: the database's records win
    kernels = json.loads(kernels_json.read_text())
    for entry in kernels.values():
        entry["rules_s"] = 1.0
    kernels_json.write_text(json.dumps(kernels))
    artifact = tmp_path / "tuned.edgec"
    manifest = json.loads(run_edgec("compile", lenet_onnx, "--target", "aarch64", *shape, "--tuning-db", db,
                                    "-o", artifact, "--json", check=True).stdout)
    tuning = manifest["backend_config"]["tuning"]
    assert sorted(tuning["kernels_from_db"]) == sorted(k["task"] for k in measured)

    host, port = farm.tracker.rsplit(":", 1)  # the tuned schedules compute the x86 build's numbers on aarch64
    _, outputs, feeds = run.bench(BoardSpec("aarch64", (host, int(port))).open(), str(artifact), 1, 5)
    np.testing.assert_allclose(outputs[0], rt.load(lenet_artifacts["tvm"]).run(feeds)["logits"], rtol=0, atol=1e-5)


def test_a_board_served_without_a_tracker_takes_its_own_key(farm, lenet_artifacts):
    port = _free_port()
    farm.spawn("direct", [sys.executable, "-m", "edgec.runtime.remote.board", "--key", "pi", "--host", HOST, "--port",
                          str(port), "--port-end", str(port + 100)], dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.monotonic() + 120
    while '"edgec_board": "serving"' not in farm.log("direct"):  # its one JSON line: bound and serving
        assert time.monotonic() < deadline and farm.procs["direct"].poll() is None, farm.log("direct")
        time.sleep(0.2)
    port = json.loads(farm.log("direct").splitlines()[0])["port"]
    proc = run_edgec("bench", lenet_artifacts["tvm"], "--rpc", f"{HOST}:{port}", "--rpc-key", "pi", "--iters", "10",
                     "--json", check=True)
    assert json.loads(proc.stdout)["device"] == "rpc:pi"
    proc = run_edgec("bench", lenet_artifacts["tvm"], "--rpc", f"{HOST}:{port}")
    assert proc.returncode == 2 and proc.stderr.startswith(f"edgec: error: board at {HOST}:{port} refused the "
                                                           "session (")
    assert proc.stderr.rstrip().endswith("a board served without a tracker takes its own key: pass --rpc-key as "
                                         "given to `edgec board serve --key`")
    farm.kill("direct")


@pytest.mark.slow
@needs_host_features("avx2", "fma")  # the x86 board is this host, the target x86-64-avx2
def test_a_board_killed_mid_tune_stops_it_and_leaves_the_database_unchanged(farm, tmp_path):
    from tests.test_tune import TARGET, one_conv_model  # an x86 kernel worth tuning, for an x86 board

    model, db = one_conv_model(tmp_path / "conv.onnx"), tmp_path / "db"
    farm.serve("doomed-tune", [sys.executable, "-m", "edgec.cli", "board", "serve"],
               dict(os.environ, PYTHONPATH=str(REPO)))
    farm.wait_free("doomed-tune", timeout=120)
    tune = subprocess.Popen([sys.executable, "-m", "edgec.cli", "tune", str(model), "--target", TARGET, "--trials",
                             "64", "--tuning-db", str(db), "--rpc-tracker", farm.tracker, "--rpc-key", "doomed-tune"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    seen = ""
    while "searching" not in seen:  # the rules-only kernels are measured on the board: the search starts
        line = tune.stderr.readline()
        assert line, f"tune ended before searching: {seen}"
        seen += line
    farm.kill("doomed-tune")
    killed = time.monotonic()
    out, err = tune.communicate(timeout=300)
    assert tune.returncode == 1 and out == ""
    assert err.splitlines()[-1] == (
        f"edgec: error: tune stopped, no board left to measure on: tracker {farm.tracker} has no board under key "
        f"'doomed-tune' (keys: aarch64, x86); start one with `edgec board serve --tracker {farm.tracker} --key "
        f"doomed-tune` on the board; the tuning database {db / TARGET} is unchanged")
    assert time.monotonic() - killed < 120 and not db.exists()
