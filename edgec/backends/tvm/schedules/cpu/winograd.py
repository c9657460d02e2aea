"""Winograd rule: the input and output transforms of `rewrites.winograd`, tile entries unrolled.

Each transform is two passes of a small matrix (B^T or A^T) over a tile, each a TE compute that selects the tile
entry from a chain of expressions; unrolled, each entry folds to its few nonzero terms, with the channel axis
vectorized inside (NHWC: channels are contiguous). The first pass is computed per tile and channel vector,
where the second reads it (a stack buffer of alpha x alpha vectors).
- Input: V[t, p, c] from the padded input (padding inlined: a bounds test per tile row, not an extra pass
  over the input): loops (p, c / lanes) parallel > [first pass] > t unrolled > lanes vectorized.
- Output: Y[n, h, w, k] with its epilogue (bias, residual add, ReLU) inlined: loops (n, h / m, w / m)
  parallel > k / lanes > [first pass] > h mod m, w mod m unrolled > lanes vectorized.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline

from edgec.backends.tvm.rewrites.winograd import INPUT_BLOCK, INPUT_HALF, OUTPUT_BLOCK, OUTPUT_HALF
from edgec.backends.tvm.schedules._loops import attempt, parallel_vectorize, static_extents
from edgec.backends.tvm.schedules.cpu.cpu_rule import CpuRule
from edgec.backends.tvm.schedules.cpu.gemm import tile_lanes
from edgec.backends.tvm.schedules.target_facts import vector_lanes

HALVES = {INPUT_BLOCK: INPUT_HALF, OUTPUT_BLOCK: OUTPUT_HALF}  # a transform's block -> its first pass's block


class Winograd(CpuRule):
    """Schedule a Winograd transform function (recognised by its TE blocks' names), declining everything else."""

    def _schedule(self, func: tirx.PrimFunc, target):
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if not blocks or not all(b.is_injective() for b in blocks):
            return None
        named = {sch.get(b.block_rv).name_hint: b.block_rv for b in blocks}
        kind = next((k for k in HALVES if k in named and HALVES[k] in named), None)
        if kind is None:
            return None
        main, half = named[kind], named[HALVES[kind]]
        shape = [int(d) for d in sch.get(main).writes[0].source.shape]
        others = try_inline(sch, [b for b in blocks if sch.get(b.block_rv).name_hint not in (kind, HALVES[kind])])
        rest = []  # a final layout change (NHWC -> NCHW graph output) keeps a nest of its own
        for other in others:
            same = [int(d) for d in sch.get(other.block_rv).writes[0].source.shape] == shape
            if not (kind == OUTPUT_BLOCK and same and attempt(sch.reverse_compute_inline, other.block_rv)):
                rest.append(other.block_rv)
        loops = sch.get_loops(main)
        extents = static_extents(sch, loops)
        if extents is None or len(loops) < 3:
            return None
        lanes = tile_lanes(extents[-1], vector_lanes(target, 32), 32)
        if extents[-1] % lanes:
            return None
        if kind == INPUT_BLOCK:
            t, p, c = loops[-3:]  # (unit loops are dropped)
            co, ci = sch.split(c, factors=[None, lanes])
            sch.reorder(p, co, t, ci)
            at = sch.fuse(p, co)
            sch.parallel(at)
            sch.unroll(t)
        else:
            *batch, h, w, k = loops
            tile = _tile_size(sch, half)
            ho, hi = sch.split(h, factors=[None, tile])
            wo, wi = sch.split(w, factors=[None, tile])
            at, ki = sch.split(k, factors=[None, lanes])
            sch.reorder(*batch, ho, wo, at, hi, wi, ki)
            sch.parallel(sch.fuse(*batch, ho, wo))
            sch.unroll(hi)
            sch.unroll(wi)
        sch.vectorize(sch.get_loops(main)[-1])
        sch.compute_at(half, at)
        loops = sch.get_loops(half)
        *entries, vector = loops[next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(at))) + 1:]
        for loop in entries:
            sch.unroll(loop)
        sch.vectorize(vector)
        for other in rest:
            parallel_vectorize(sch, other, lanes)
        return sch


def _tile_size(sch: s_tir.Schedule, half) -> int:
    """m, the output tile's side: the first axis of the output transform's first pass, (A^T M)[i, nu]."""
    return int(sch.get(half).writes[0].source.shape[0])
