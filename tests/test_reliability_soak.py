"""benchmarks/soak.py as a test: RSS growth stays under 5% and 8 threads sharing one Module get the
sequential results. By default a short ORT soak (2,000 + 2,000 runs, a few seconds); the TVM soak
(its runtime alone takes seconds to import) and the full 10,000-run soaks are marked slow.
The figures of a full run are in the issue's closing note: `.venv/bin/python benchmarks/soak.py`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


@pytest.mark.parametrize("backend, runs", [
    ("ort", 2000),
    pytest.param("tvm", 2000, marks=pytest.mark.slow),
    pytest.param("ort", 10_000, marks=pytest.mark.slow),
    pytest.param("tvm", 10_000, marks=pytest.mark.slow),
])
def test_soak_keeps_rss_flat_and_threads_consistent(lenet_artifacts, backend, runs):
    proc = subprocess.run([sys.executable, SOAK, lenet_artifacts[backend], "--runs", str(runs), "--warmup", "200",
                           "--threads", "8", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    print(f"\nsoak {backend}: {result}")
    assert result["ok"] and result["threaded_mismatches"] == 0 and result["runs"] == runs
    assert 0 < result["rss_mb"]["after_warmup"] and result["growth_pct"] < 5.0
