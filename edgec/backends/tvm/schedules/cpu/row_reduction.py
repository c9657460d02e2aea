"""RowReduction rule: row-wise kernels (softmax, LayerNorm) whose reductions keep vectors of running values.

Pattern: what `rewrites.row_reductions` builds, possibly with elementwise producers FuseOps put in front (an
attention mask's add): blocks sharing their leading spatial axes (the rows), at least one a reduction whose
innermost spatial iterator reads its input unit-stride (a `*_partial` block: rows x PARTIALS running values,
reduced over the row's chunks). Functions without one are TVM's Reduction rule's.

Schedule: the rows fused and parallel, every block computed per row; a partial reduction runs its chunk loop
outside the PARTIALS loop, which is vectorized (init included); elementwise blocks are vectorized over the row,
their tail (197 = 12 x 16 + 5) a loop of its own (`loop_partition`): a predicated vector loop is scalarized.
The folds of the running values and the tails stay scalar loops (at most PARTIALS steps).
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func

from edgec.backends.tvm.schedules._loops import static_extents
from edgec.backends.tvm.schedules.cpu.cpu_rule import CpuRule
from edgec.backends.tvm.schedules.cpu.gemm import _reads_along
from edgec.backends.tvm.schedules.target_facts import vector_lanes


class RowReduction(CpuRule):
    """Schedule a row-wise kernel with vectorized partial reductions."""

    def _schedule(self, func: tirx.PrimFunc, target):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos or len(infos) < 2 or not infos[-1].is_injective():
            return None
        kinds = [info.dom_kind() for info in infos]
        if any(not k or k[0] != "S" for k in kinds):
            return None
        n_rows = min(len(k) - len(k.lstrip("S")) for k in kinds)
        partials = [info for info, k in zip(infos, kinds) if not info.is_injective() and _is_partial(sch, info, k)]
        if not partials:
            return None
        lanes = vector_lanes(target, sch.get(infos[-1].block_rv).writes[0].source.dtype.bits)

        loops = sch.get_loops(infos[-1].block_rv)
        row = sch.fuse(*loops[:n_rows]) if n_rows > 1 else loops[0]
        sch.parallel(row)
        for info in reversed(infos[:-1]):
            sch.compute_at(info.block_rv, row, preserve_unit_loops=True)
        partial_names = {sch.get(p.block_rv).name_hint for p in partials}
        for info in infos:
            if sch.get(info.block_rv).name_hint in partial_names:
                _vectorize_partial(sch, info.block_rv)
            elif info.is_injective():
                _vectorize_row(sch, info.block_rv, lanes)
        return sch


def _is_partial(sch: s_tir.Schedule, info, kind: str) -> bool:
    """A reduction `S..S R..R` whose innermost spatial iterator indexes its output's and inputs' last axis
    unit-stride: its running values can be a vector."""
    n_spatial = len(kind) - len(kind.lstrip("S"))
    if kind.lstrip("S").strip("R") or n_spatial < 2:
        return False
    return _reads_along(sch.get(info.block_rv), info.iters[n_spatial - 1].var)


def _vectorize_partial(sch: s_tir.Schedule, block) -> None:
    """Chunk loops outside the running-values loop; the init and the update vectorized over it."""
    loops = sch.get_loops(block)
    n_reduce = sum(1 for iv in sch.get(block).iter_vars if iv.iter_type == tirx.IterVar.CommReduce)
    values, reduce = loops[-n_reduce - 1], loops[-n_reduce:]
    sch.reorder(*reduce, values)
    sch.vectorize(values)
    init = sch.decompose_reduction(block, reduce[0])
    sch.vectorize(sch.get_loops(init)[-1])


def _vectorize_row(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Vectorize an elementwise block over its innermost loop; the tail that whole vectors leave is its own loop."""
    loops = sch.get_loops(block)
    extents = static_extents(sch, loops[-1:])
    if len(loops) < 2 or extents is None or extents[0] < 2:
        return
    n = extents[0]
    if n <= lanes:
        sch.vectorize(loops[-1])
        return
    inner = loops[-1]
    if n % lanes:
        inner, _tail = sch.loop_partition(inner, [n - n % lanes, None])
    sch.vectorize(sch.split(inner, factors=[None, lanes])[-1])
