"""Per-kernel time of a TVM artifact: which compiled kernels a run spends its time in.

The Relax VM calls an instrument before and after every call instruction (`VirtualMachine.set_instrument`);
the interval between the two is one kernel's time. The instrument itself costs a few microseconds per call,
so shares of kernels under ~20 us read high; compare the kernels' sum with the uninstrumented p50.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgec.errors import EdgecError

# VM builtins (allocation, shape checks, tuple access): their intervals are bookkeeping, not kernels
_BOOKKEEPING = ("vm.builtin.", "relax.", "ffi.")


@dataclass(frozen=True)
class KernelTime:
    name: str
    calls: int  # per run
    ms: float  # per run: median over the profiled runs of the kernel's summed time
    share: float  # of the instrumented run's kernel time


def profile_kernels(module, feeds: dict[str, np.ndarray], runs: int = 5) -> list[KernelTime]:
    """Kernels of a loaded TVM CPU/CUDA Module, slowest first, timed over `runs` instrumented runs."""
    executor = module._executor
    vm = getattr(executor, "_vm", None)
    if vm is None:
        raise EdgecError(f"{module.path}: per-kernel profiles need a TVM artifact (this one is "
                         f"'{module.backend}'); compile with --backend tvm")
    per_run: list[dict[str, list[float]]] = []
    current: dict[str, list[float]] = {}
    started: dict[str, float] = {}
    sync = executor._dev.sync

    def instrument(func, name, before, ret, *args):
        name = str(name)
        if name.startswith(_BOOKKEEPING):
            return 0
        if before:
            sync()
            started[name] = time.perf_counter()
        else:
            sync()
            current.setdefault(name, []).append((time.perf_counter() - started.pop(name)) * 1e3)
        return 0

    module.run(feeds)  # warm
    vm.set_instrument(instrument)
    try:
        for _ in range(runs):
            current = {}
            module.run(feeds)
            per_run.append(current)
    finally:
        vm.set_instrument(None)
    names = {n for run in per_run for n in run}
    sums = {n: float(np.median([sum(run.get(n, [])) for run in per_run])) for n in names}
    total = sum(sums.values()) or 1.0
    rows = [KernelTime(n, len(per_run[0].get(n, [])), sums[n], sums[n] / total) for n in names]
    return sorted(rows, key=lambda k: -k.ms)


def format_kernels(rows: list[KernelTime], top: int) -> str:
    """A plain table of the `top` slowest kernels and what the rest add up to."""
    lines = [f"{'kernel':<48} {'calls':>5} {'ms':>9} {'share':>6}"]
    for k in rows[:top]:
        lines.append(f"{k.name[:48]:<48} {k.calls:>5} {k.ms:>9.3f} {k.share:>6.1%}")
    rest = rows[top:]
    if rest:
        lines.append(f"{f'({len(rest)} others)':<48} {sum(k.calls for k in rest):>5} "
                     f"{sum(k.ms for k in rest):>9.3f} {sum(k.share for k in rest):>6.1%}")
    return "\n".join(lines)
