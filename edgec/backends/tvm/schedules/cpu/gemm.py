"""Gemm rule: register-blocked, vectorized, parallel schedule for one reduction with a vector axis.

Pattern: a PrimFunc with exactly one reduction block whose iterators are spatial then reduction
(`S..SR..R`), spatial producer blocks before it (padding, layout copies) and spatial consumer
blocks after it (bias, folded BatchNorm, ReLU/Clip, residual add: the epilogues FuseOps puts there).
Its innermost spatial iterator `v` must index the innermost (unit-stride) axis of the output, and
every input must read along `v` contiguously or not depend on it (a broadcast). That covers
conv2d in NHWC with HWIO weights (v = output channel), matmul/dense [.., M, K] x [K, N] (v = N),
pooling and spatial means in NHWC (v = channel), and NCHW stride-1 conv (v = output column).

Tiling (the classic CPU direct-convolution / GEMM micro-kernel):
- `v` is split into `vo x vi`, `vi` = `ob` elements, a multiple of the target's vector lanes;
  the next spatial iterator `r` (output column of a conv, row of a matmul) into `ro x ri`,
  `ri` = `rb`, a divisor of its extent. `rb * ob / lanes` accumulators live in vector registers:
  as many as the target has, less four for the operands.
- Loop order: fused(vo, outer spatial..., ro) [parallel] > reduction loops > ri [unrolled] >
  vi [vectorized]. `vo` outermost keeps one weight panel (all of K for `ob` outputs) hot in
  cache while every output row/pixel streams past it.
- The accumulator tile is a `local` cache (`cache_write`) initialized before the reduction
  (`decompose_reduction`); the epilogue chain is inlined into one block computed at the tile
  (`reverse_compute_at`), so bias/activation/residual are applied while the tile is in registers.
- Weights (inputs the caller passes as constants: the function's `layout_free_buffers`) that are
  read along `v` are repacked `[..., N] -> [N / ob, ..., ob]`, so the micro-kernel streams one
  contiguous panel instead of `ob`-wide strips `N` apart (which thrash L1 sets and the TLB for
  large N). The repack is a `meta_schedule.layout_rewrite_preproc` block that the pipeline splits
  out (`SplitLayoutRewritePreproc`) and folds into a constant at compile time.
- Producers: a plain copy (the zero-width `pad_temp` of a 1x1 or unpadded conv) is inlined, so the
  kernel reads its input directly instead of after a full extra pass over it. Padding read along `v`
  (a window op: depthwise conv, pooling) is inlined too and the window loops unrolled: the kernel does
  a few FMAs per loaded element, so the padded copy's extra memory pass cost more than the bounds
  tests, which unrolling turns into constants per tap (MobileNetV2's depthwise kernels: 24% less time).
  Padding a channel reduction reads (a dense conv) stays a parallel, vectorized nest of its own:
  there each input element feeds `ob` FMAs, and a bounds test per reduction step would sit in the
  micro-kernel's inner loop.
"""

from __future__ import annotations

import re

import tvm_ffi
from tvm import ir, s_tir, sym, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline

from edgec.backends.tvm.schedules._loops import (
    ACCUMULATOR_SCOPE,
    MIN_PARALLEL_WORK,
    known_work,
    loop_extents,
    parallel_vectorize,
    static_extents,
)
from edgec.backends.tvm.schedules.cpu.cpu_rule import CpuRule
from edgec.backends.tvm.schedules.target_facts import vector_lanes, vector_registers

MAX_UNROLL = 8  # longest register-block axis unrolled in the micro-kernel
OPERAND_REGISTERS = 4  # left for broadcast inputs and weights: 14 accumulators spilled in 3x3 convs (3x slower)
PANEL_BYTES = 256 * 1024  # weight panel kept cache-resident: half of a typical 512 KiB L2
MAX_WINDOW = 7 * 7  # window taps unrolled in a depthwise/pooling kernel: 7x7, the largest common depthwise kernel


class Gemm(CpuRule):
    """Schedule a single-reduction function (conv2d, matmul, pooling) as a tiled micro-kernel."""

    def _schedule(self, func: tirx.PrimFunc, target):
        sch = s_tir.Schedule(func)
        split = split_at_reduction(sch)
        if split is None:
            return None
        producers, red, consumers = split
        extents = loop_extents(sch, red.get_loops())
        n_spatial = len(extents) - _n_reduce(red)
        # only loops outside the micro-kernel may be symbolic (a dynamic batch: the tile loop takes it)
        if any(n is None for n in extents[n_spatial - 1:]) or not _reads_along(sch.get(red.block_rv),
                                                                              red.iters[n_spatial - 1].var):
            return None
        consumers = try_inline(sch, consumers)
        if len(consumers) > 1:
            return None

        bits = sch.get(red.block_rv).writes[0].source.dtype.bits
        lanes = vector_lanes(target, bits)
        panel_rows = 1
        for n in extents[n_spatial:]:
            panel_rows *= n
        ob, rb = choose_tile(extents[n_spatial - 1], (extents[n_spatial - 2] or 1) if n_spatial > 1 else 1, lanes,
                             vector_registers(target) - OPERAND_REGISTERS, panel_rows, bits // 8)

        window = _is_window(sch.get(red.block_rv), red.iters[n_spatial - 1].var)
        _pack_weights(sch, red.block_rv, func, red.iters[n_spatial - 1].var, ob)
        writeback = sch.cache_write(red.block_rv, 0, ACCUMULATOR_SCOPE)
        if consumers:
            sch.compute_inline(writeback)
            final = consumers[0].block_rv
        else:
            final = writeback

        loops = sch.get_loops(red.block_rv)
        spatial, reduce = loops[:n_spatial], loops[n_spatial:]
        vo, vi = sch.split(spatial[-1], factors=[None, ob])
        if n_spatial > 1:
            ro, ri = sch.split(spatial[-2], factors=[None, rb])
            outer, inner = [vo, *spatial[:-2], ro], [ri, vi]
        else:
            outer, inner = [vo], [vi]
        sch.reorder(*outer, *reduce, *inner)
        if window and panel_rows <= MAX_WINDOW:  # panel_rows: the window's taps
            for loop in reduce:
                sch.unroll(loop)
        tile = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if known_work(extents) * bits // 32 >= MIN_PARALLEL_WORK:  # 8-bit elements: 4 to a 32-bit lane
            sch.parallel(tile)
        if len(inner) == 2:
            sch.unroll(inner[0])
        sch.vectorize(inner[-1])

        sch.reverse_compute_at(final, tile, preserve_unit_loops=True)
        _vectorize_tile(sch, final, after=tile, lanes=lanes)
        init = sch.decompose_reduction(red.block_rv, reduce[0])
        _vectorize_tile(sch, init, after=tile, lanes=lanes)

        for producer in producers:
            if (window or _is_copy(sch.get(producer.block_rv))) and _try_inline(sch, producer.block_rv):
                continue
            parallel_vectorize(sch, producer.block_rv, lanes)
        return sch


def split_at_reduction(sch: s_tir.Schedule):
    """(producer blocks, the one `S..SR..R` reduction block, consumer blocks) of the scheduled
    function, or None when it has no such single reduction."""
    blocks = normalize_prim_func(sch)
    reductions = [b for b in blocks or [] if not b.is_injective()]
    if len(reductions) != 1 or not re.fullmatch("S+R+", reductions[0].dom_kind()):
        return None
    position = blocks.index(reductions[0])
    return blocks[:position], reductions[0], blocks[position + 1:]


def choose_tile(n_vec: int, n_reg: int, lanes: int, registers: int, panel_rows: int,
                dtype_bytes: int) -> tuple[int, int]:
    """Pick (ob, rb): `ob` elements of the vector axis by `rb` of the register-block axis.

    `ob` is a power-of-two number of vectors dividing `n_vec` (LLVM splits such vector types into
    registers cleanly; 3- or 6-register types measured 3-18x slower), else the largest divisor of
    `n_vec` up to two vectors, so no tail loop is needed; `rb` a divisor of `n_reg` up to MAX_UNROLL.
    1. The weight panel one tile streams (`panel_rows` reduction steps x `ob`) must fit in
       PANEL_BYTES, so it stays in L2 while every output pixel/row passes over it.
    2. Most accumulator registers `rb * ceil(ob / lanes)` within `registers`.
    3. Most FMAs per operand load (`rb` broadcasts + `ob / lanes` weight vectors), then longer `rb`.
    """
    obs = [lanes * m for m in (1, 2, 4, 8) if m <= registers and n_vec % (lanes * m) == 0]
    if not obs:
        obs = [max(d for d in range(1, min(n_vec, 2 * lanes) + 1) if n_vec % d == 0)]
    fitting = [ob for ob in obs if panel_rows * ob * dtype_bytes <= PANEL_BYTES] or obs[:1]
    rbs = [d for d in range(1, min(n_reg, MAX_UNROLL) + 1) if n_reg % d == 0]

    def vectors(ob: int) -> int:
        return -(-ob // lanes)

    def score(tile: tuple[int, int]) -> tuple:
        ob, rb = tile
        fmas = rb * vectors(ob)
        return fmas, fmas / (rb + vectors(ob)), rb

    candidates = [(ob, rb) for ob in fitting for rb in rbs if rb * vectors(ob) <= registers] or [(fitting[0], 1)]
    return max(candidates, key=score)


def _n_reduce(info) -> int:
    return info.dom_kind().count("R")


def _vars_in(expr) -> set:
    found = set()
    tvm_ffi.structural_walk(expr, (tirx.Var, found.add), order="post")
    return found


def _reads_along(block: s_tir.SBlock, v) -> bool:
    """True when `v` indexes the output's innermost axis and every read is unit-stride along `v` or
    independent of it (so a vector of `v` is one contiguous load or one broadcast)."""
    out = block.writes[0].region
    if not out or not out[-1].min.same_as(v):
        return False
    for region in block.reads:
        ranges = region.region
        if any(v in _vars_in(r.min) for r in ranges[:-1]):
            return False
        if ranges and v in _vars_in(ranges[-1].min):
            coeff = sym.detect_linear_equation(ranges[-1].min, [v])
            if len(coeff) != 2 or not hasattr(coeff[0], "value") or int(coeff[0].value) != 1:
                return False
    return True


def _is_window(block: s_tir.SBlock, v) -> bool:
    """True when every input is read along `v`: each output channel reduces over a window of its own
    input channel (depthwise conv, pooling), not over all channels through a broadcast (dense conv, matmul)."""
    out = block.writes[0].source
    inputs = [r for r in block.reads if not r.source.same_as(out)]
    return bool(inputs) and all(r.region and v in _vars_in(r.region[-1].min) for r in inputs)


def _is_copy(block: s_tir.SBlock) -> bool:
    """A producer that stores a plain load: a layout copy or zero-width padding, no bounds tests."""
    return isinstance(block.body, tirx.BufferStore) and isinstance(block.body.value, ir.expr.TensorLoad)


def _try_inline(sch: s_tir.Schedule, block) -> bool:
    """Inline `block` into its consumer; False when TVM refuses (it then keeps a nest of its own)."""
    try:
        sch.compute_inline(block)
    except s_tir.ScheduleError:
        return False
    return True


def _pack_weights(sch: s_tir.Schedule, block, func: tirx.PrimFunc, v, ob: int) -> None:
    """Repack every layout-free input read along `v` into `ob`-wide contiguous panels."""
    free = {int(i) for i in (func.attrs.get("layout_free_buffers", None) or [])} if func.attrs else set()
    weights = [func.params[i] for i in sorted(free)]
    for index, region in enumerate(sch.get(block).reads):
        ranges = region.region
        if not any(region.source.same_as(w) for w in weights) or not ranges or not ranges[-1].min.same_as(v):
            continue
        if int(region.source.shape[-1].value) % ob:
            continue
        packed = sch.cache_read(block, index, "global")
        sch.annotate(packed, "meta_schedule.layout_rewrite_preproc", True)
        sch.transform_layout(block, ("read", index), lambda *i: (i[-1] // ob, *i[:-1], i[-1] % ob))


def _vectorize_tile(sch: s_tir.Schedule, block, after, lanes: int) -> None:
    """Under the tile loop: vectorize the innermost loop of `block`, unroll the short ones outside it."""
    loops = sch.get_loops(block)
    index = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(after)))
    own = loops[index + 1:]
    extents = static_extents(sch, own)
    if not own or extents is None:
        return
    if extents[-1] >= 2:
        sch.vectorize(own[-1])
    for loop, n in zip(own[:-1], extents[:-1]):
        if 1 < n <= MAX_UNROLL:
            sch.unroll(loop)
