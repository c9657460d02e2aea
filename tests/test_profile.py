"""Per-kernel profiles of TVM artifacts (`edgec.runtime.profile`, `edgec bench --kernels N`)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_edgec

pytest.importorskip("tvm")


def test_profile_names_every_kernel_of_a_run(lenet_artifacts):
    import edgec.runtime as rt
    from edgec.runtime.bench import make_inputs
    from edgec.runtime.profile import profile_kernels

    module = rt.load(lenet_artifacts["tvm"])
    rows = profile_kernels(module, make_inputs(module.inputs), runs=3)
    names = [k.name for k in rows]
    assert len(names) == len(set(names)) >= 3
    assert any("conv2d" in n for n in names) and any("matmul" in n for n in names), names
    assert not any(n.startswith("vm.builtin.") for n in names)
    assert sum(k.share for k in rows) == pytest.approx(1.0)
    assert [k.ms for k in rows] == sorted((k.ms for k in rows), reverse=True)
    assert all(k.calls >= 1 and k.ms > 0 for k in rows)


def test_bench_kernels_prints_the_slowest(lenet_artifacts):
    proc = run_edgec("bench", lenet_artifacts["tvm"], "--iters", "5", "--kernels", "2", check=True)
    table = proc.stdout[proc.stdout.index("kernel"):].splitlines()
    assert table[0].split() == ["kernel", "calls", "ms", "share"]
    assert len(table) == 4 and table[3].startswith("(")  # two kernels, then what the others add up to
    result = json.loads(run_edgec("bench", lenet_artifacts["tvm"], "--iters", "5", "--kernels", "3", "--json",
                                  check=True).stdout)
    assert [set(k) for k in result["kernels"]] == [{"name", "calls", "ms", "share"}] * 3


def test_bench_kernels_refuses_other_backends(lenet_artifacts):
    proc = run_edgec("bench", lenet_artifacts["ort"], "--iters", "5", "--kernels", "2")
    assert proc.returncode != 0
    assert "is a 'ort' artifact; per-kernel times need one compiled with --backend tvm" in proc.stderr
