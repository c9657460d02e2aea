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
  as many as the target has, less four for the operands, and on x86 no tile whose accumulators, weight
  vectors and broadcast together need more registers than there are (`live_registers`: LLVM spills them).
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
    attempt,
    known_work,
    loop_extents,
    parallel_vectorize,
    static_extents,
)
from edgec.backends.tvm.schedules.cpu.cpu_rule import CpuRule
from edgec.backends.tvm.schedules.target_facts import is_x86, vector_bits, vector_lanes, vector_registers

MAX_UNROLL = 8  # longest register-block axis unrolled in the micro-kernel
OPERAND_REGISTERS = 4  # left for broadcast inputs and weights: 14 accumulators spilled in 3x3 convs (3x slower)
PANEL_BYTES = 256 * 1024  # weight panel kept cache-resident: half of a typical 512 KiB L2 (`panel_bytes`)
MAX_PAD_WASTE = 1 / 16  # most extra work padding may add to a kernel: 197 tokens -> 208 (5.6%)
ROW_PAD_MIN_VECTORS = 16  # output vectors per row from which padding the rows pays for the padded input copy
MAX_WINDOW = 7 * 7  # window taps unrolled in a depthwise/pooling kernel: 7x7, the largest common depthwise kernel
MIN_ACCUMULATORS = 8  # FMA latency (4 cycles) x FMA pipes (2): fewer independent accumulators leave the pipes idle


class Gemm(CpuRule):
    """Schedule a single-reduction function (conv2d, matmul, pooling) as a tiled micro-kernel."""

    def _schedule(self, func: tirx.PrimFunc, target):
        split = schedule_reduction(func)
        if split is None:
            return None
        sch, producers, red, consumers = split
        extents = loop_extents(sch, red.get_loops())
        n_spatial = len(extents) - _n_reduce(red)
        # only loops outside the micro-kernel may be symbolic (a dynamic batch: the tile loop takes it)
        if any(n is None for n in extents[n_spatial - 1:]) or not _reads_along(sch.get(red.block_rv),
                                                                              red.iters[n_spatial - 1].var):
            return None
        bits = sch.get(red.block_rv).writes[0].source.dtype.bits
        panel_rows = 1
        for n in extents[n_spatial:]:
            panel_rows *= n
        n_vec, n_reg = extents[n_spatial - 1], (extents[n_spatial - 2] or 1) if n_spatial > 1 else 1
        lanes = tile_lanes(n_vec, vector_lanes(target, bits), bits)
        window = _is_window(sch.get(red.block_rv), red.iters[n_spatial - 1].var)
        # x86's 24 channels (AVX2's 3 vectors, AVX-512's 3 of 256 bits): one tile reads the input once, not 3 times
        three = not window and is_x86(target) and n_vec == 3 * lanes
        registers, live = vector_registers(target) - OPERAND_REGISTERS, spill_limit(target)
        panel = panel_bytes(target)
        vec_pad, reg_pad = padding(n_vec, n_reg, lanes, registers, panel_rows, bits // 8, panel, live)
        if vec_pad > 1 and n_vec < ROW_PAD_MIN_VECTORS * lanes and _weight_along(sch, red, func, n_spatial):
            vec_pad = 1  # a padded weight's repack is no plain copy, which MetaSchedule's measurement needs
        if (vec_pad, reg_pad) != (1, 1):  # extents with no good divisor (197 tokens, a 50257-word vocabulary)
            padded = _pad(sch, red, n_spatial, vec_pad, reg_pad)
            if padded is not None:
                sch, producers, red, consumers = padded
                n_vec, n_reg = -(-n_vec // vec_pad) * vec_pad, -(-n_reg // reg_pad) * reg_pad
        consumers = try_inline(sch, consumers)
        if len(consumers) > 1:
            return None
        ob, rb = choose_tile(n_vec, n_reg, lanes, registers, panel_rows, bits // 8, panel, live, three)

        packed = _pack_weights(sch, red.block_rv, func, red.iters[n_spatial - 1].var, ob, producers)
        producers = [p for p in producers if not any(sch.get(p.block_rv).same_as(b) for b in packed)]
        writeback = sch.cache_write(red.block_rv, 0, ACCUMULATOR_SCOPE)
        if consumers:
            sch.compute_inline(writeback)
            final = consumers[0].block_rv
        else:
            final = writeback

        loops = sch.get_loops(red.block_rv)
        spatial, reduce = loops[:n_spatial], loops[n_spatial:]
        vo, vi = sch.split(spatial[-1], factors=[None, ob])
        by_vector = sch.split(vi, factors=[None, lanes]) if _odd_vectors(ob, lanes) else [vi]
        if n_spatial > 1:
            ro, ri = sch.split(spatial[-2], factors=[None, rb])
            outer, inner = [vo, *spatial[:-2], ro], [ri, *by_vector]
        else:
            outer, inner = [vo], by_vector
        sch.reorder(*outer, *reduce, *inner)
        if window and panel_rows <= MAX_WINDOW:  # panel_rows: the window's taps
            for loop in reduce:
                sch.unroll(loop)
        tile = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if known_work(extents) * bits // 32 >= MIN_PARALLEL_WORK:  # 8-bit elements: 4 to a 32-bit lane
            sch.parallel(tile)
        for loop in inner[:-1]:
            sch.unroll(loop)
        sch.vectorize(inner[-1])

        sch.reverse_compute_at(final, tile, preserve_unit_loops=True)
        _vectorize_tile(sch, final, after=tile, lanes=lanes)
        init = sch.decompose_reduction(red.block_rv, reduce[0])
        _vectorize_tile(sch, init, after=tile, lanes=lanes)

        for producer in producers:
            if (window or _is_copy(sch.get(producer.block_rv))) and attempt(sch.compute_inline, producer.block_rv):
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


def schedule_reduction(func: tirx.PrimFunc):
    """(a Schedule of `func`, *`split_at_reduction` of it), or None when `func` has no single reduction."""
    sch = s_tir.Schedule(func)
    split = split_at_reduction(sch)
    return None if split is None else (sch, *split)


def tile_lanes(n_vec: int, lanes: int, bits: int) -> int:
    """The vector width a tile of `n_vec` outputs uses: the register's `lanes`, or half of a 512-bit register
    where that divides `n_vec` and a whole one does not (AVX-512 has as many 256-bit registers: MobileNetV2's
    24-channel projections ran at 13 MAC/ns as 1.5-register vectors)."""
    if lanes * bits == 512 and n_vec % lanes and n_vec % (lanes // 2) == 0:
        return lanes // 2
    return lanes


def panel_bytes(target) -> int:
    """The weight panel a tile may stream from L2: PANEL_BYTES, twice that on AVX-512 targets, whose cores have
    1 MiB of L2 or more (Skylake-SP and later, Zen 4/5): ResNet-50's 3x3 convs over 256 channels get 7 x 32 tiles
    instead of 7 x 16."""
    return 2 * PANEL_BYTES if vector_bits(target) >= 512 else PANEL_BYTES


def choose_tile(n_vec: int, n_reg: int, lanes: int, registers: int, panel_rows: int,
                dtype_bytes: int, panel: int = PANEL_BYTES, live_limit: int | None = None,
                three_vectors: bool = False) -> tuple[int, int]:
    """Pick (ob, rb): `ob` elements of the vector axis by `rb` of the register-block axis.

    `ob` is a power-of-two number of vectors dividing `n_vec` (LLVM splits such vector types into
    registers cleanly; 3- or 6-register types measured 3-18x slower), or three where `three_vectors` (the
    schedule then unrolls them vector by vector: no 3-register type), else the largest divisor of
    `n_vec` up to two vectors, so no tail loop is needed; `rb` a divisor of `n_reg` up to MAX_UNROLL.
    1. The weight panel one tile streams (`panel_rows` reduction steps x `ob`) must fit in
       `panel` bytes, so it stays in L2 while every output pixel/row passes over it; where no such tile holds
       MIN_ACCUMULATORS, twice that (the whole L2 of a typical core), if a wider tile then holds more with as
       many rows (as many FMAs per weight byte streamed).
    2. Accumulator registers `rb * ceil(ob / lanes)` within `registers`, and all the registers the
       micro-kernel keeps live (`live_registers`) within `live_limit` where given (x86: `spill_limit`).
    3. Among tiles of at least MIN_ACCUMULATORS, those with at least as many rows as vectors (a 14-wide map's
       7 x 2 loads 2 weight vectors per 14 FMAs from the panel, its 2 x 8 loads 8 per 16: ResNet-50's 1x1 convs
       over 14x14 maps ran 20-32% faster as 7 x 2), then most accumulators, then at most two vectors wide (the
       weight panel streams from L2: ViT's 197x768x192 dense ran 1.4x faster as 6 rows x 2 vectors than as
       3 x 4), then most FMAs per operand load (`rb` broadcasts + `ob / lanes` weight vectors), then longer `rb`.
    """
    multiples = (1, 2, 3, 4, 8) if three_vectors else (1, 2, 4, 8)
    obs = [lanes * m for m in multiples if m <= registers and n_vec % (lanes * m) == 0]
    if not obs:
        obs = [max(d for d in range(1, min(n_vec, 2 * lanes) + 1) if n_vec % d == 0)]
    rbs = [d for d in range(1, min(n_reg, MAX_UNROLL) + 1) if n_reg % d == 0]

    def vectors(ob: int) -> int:
        return -(-ob // lanes)

    def fits(ob: int, rb: int) -> bool:
        return rb * vectors(ob) <= registers and (live_limit is None or live_registers(vectors(ob), rb) <= live_limit)

    def score(tile: tuple[int, int]) -> tuple:
        ob, rb = tile
        fmas = rb * vectors(ob)
        narrow = vectors(ob) <= 2  # a 16 x 6 tile streams half the weight panel bytes per FMA of a 32 x 3 one
        fed = fmas >= MIN_ACCUMULATORS
        tall = fed and rb >= vectors(ob)  # each weight vector reused by as many rows as there are weight vectors
        return fed, tall, fmas, narrow, fmas / (rb + vectors(ob)), rb

    def best(limit: int, min_rb: int = 1) -> tuple[int, int]:
        fitting = [ob for ob in obs if panel_rows * ob * dtype_bytes <= limit] or obs[:1]
        tiles = [(ob, rb) for ob in fitting for rb in rbs if rb >= min_rb and fits(ob, rb)]
        return max(tiles or [(fitting[0], 1)], key=score)

    tile = best(panel)
    if tile[1] * vectors(tile[0]) < MIN_ACCUMULATORS:  # ResNet's 7x7 maps over 512 channels: 7 x 16 -> 7 x 32
        tile = max(tile, best(2 * panel, min_rb=tile[1]), key=score)
    return tile


def _odd_vectors(ob: int, lanes: int) -> bool:
    """True when `ob` is a number of whole vectors that is not a power of two (three): the tile unrolls them."""
    vectors = ob // lanes
    return ob % lanes == 0 and vectors & (vectors - 1) != 0


def live_registers(vectors: int, rb: int) -> int:
    """Vector registers an `rb` x `vectors` micro-kernel keeps live on x86: its accumulators, the weight vectors
    when more than one row reuses them, and the broadcast input when more than one vector reuses it (a value
    used once stays a memory operand: `vfmadd231ps (mem){1to16}`)."""
    return rb * vectors + (vectors if rb > 1 else 0) + (1 if vectors > 1 else 0)


def spill_limit(target) -> int | None:
    """The most vector registers a micro-kernel may keep live without spilling: all of them on x86, where LLVM
    gave AVX-512's 7 x 4 tile (33 live) two spilled accumulators and 24 register moves per reduction step, and
    the 7x7 stem's (3 channels unrolled) 48 stack accesses per 84 FMAs; None on AArch64, whose NEON multiplies
    by a vector lane instead of a broadcast register (not measured on a board)."""
    return vector_registers(target) if is_x86(target) else None


def padding(n_vec: int, n_reg: int, lanes: int, registers: int, panel_rows: int, dtype_bytes: int,
            panel: int = PANEL_BYTES, live_limit: int | None = None) -> tuple[int, int]:
    """(vector-axis, register-axis) padding factors for `pad_einsum`; 1 where the extent tiles well as it is.

    The vector axis pads to whole vectors when it is longer than two vectors and not a multiple of `lanes`
    (else the tile is scalar: ViT's 197 tokens, GPT-2's 50257-word LM head), to the widest of 4, 2, 1 vectors
    that wastes at most MAX_PAD_WASTE of the work. The register axis (rows) pads when it is longer than
    MAX_UNROLL, padding it gains at least a quarter more accumulators in a tile at most two vectors wide (197
    rows have no divisor but 1: 6 x 16 instead of 1 x 64; 56 pixel columns keep their 4 x 16, which beat a
    padded 3 x 32) or, where such tiles cannot fill the registers (AVX-512), in any tile (ViT's dense layers:
    7 x 64 on 203 rows instead of 1 x 64, 4.4x faster), and either the tile is starved (at most half the
    accumulator registers) or the output is wide enough (ROW_PAD_MIN_VECTORS vectors) to amortize the padded
    copy of the other operand.
    """
    def waste(n: int, factor: int) -> float:
        return (-(-n // factor) * factor - n) / n

    def accumulators(n_v: int, n_r: int) -> tuple[int, bool]:
        ob, rb = choose_tile(n_v, n_r, lanes, registers, panel_rows, dtype_bytes, panel, live_limit)
        return rb * -(-ob // lanes), ob <= 2 * lanes

    vec_pad = 1
    if n_vec > 2 * lanes and n_vec % lanes:  # up to two vectors, one tile covers the axis as it is (10 classes)
        vec_pad = next(lanes * m for m in (4, 2, 1) if m == 1 or waste(n_vec, lanes * m) <= MAX_PAD_WASTE)
    n_v = -(-n_vec // vec_pad) * vec_pad
    if n_reg <= MAX_UNROLL:
        return vec_pad, 1
    now, _ = accumulators(n_v, n_reg)
    if now > registers // 2 and n_v < ROW_PAD_MIN_VECTORS * lanes:
        return vec_pad, 1
    gains = [(accumulators(n_v, -(-n_reg // r) * r), r) for r in range(MAX_UNROLL, 1, -1)
             if n_reg % r and waste(n_reg, r) <= MAX_PAD_WASTE]
    wide_ok = 2 * MAX_UNROLL < registers  # two-vector tiles cannot fill the registers (AVX-512: 16 of 28)
    gains = [(acc, narrow, r) for (acc, narrow), r in gains if (narrow or wide_ok) and acc * 4 >= now * 5]
    return vec_pad, max(gains, default=(now, True, 1))[2]


def _pad(sch: s_tir.Schedule, red, n_spatial: int, vec_pad: int, reg_pad: int):
    """Pad the reduction's vector and register axes (`pad_einsum`: padded copies of the inputs, the result
    written back unpadded); (schedule, producers, reduction, consumers) after it, or None where TVM refuses
    (a conv's windowed indices are not an einsum)."""
    factors = [1] * len(red.iters)
    factors[n_spatial - 1] = vec_pad
    if n_spatial > 1:
        factors[n_spatial - 2] = reg_pad
    padded = sch.copy()
    try:
        padded.pad_einsum(padded.get_sblock(sch.get(red.block_rv).name_hint), factors)
    except s_tir.ScheduleError:
        return None
    split = split_at_reduction(padded)
    if split is None:
        return None
    return (padded, *split)


def weight_params(func: tirx.PrimFunc) -> list:
    """The function's layout-free parameters (`layout_free_buffers`): the weights its caller passes as constants."""
    free = func.attrs.get("layout_free_buffers", None) if func.attrs else None
    return [func.params[int(i)] for i in sorted(int(i) for i in free or [])]


def _weight_along(sch: s_tir.Schedule, red, func: tirx.PrimFunc, n_spatial: int) -> bool:
    """True when a layout-free input (a constant weight) is read along the vector axis."""
    v = red.iters[n_spatial - 1].var
    return any(r.source.same_as(w) and r.region and v in _vars_in(r.region[-1].min)
               for r in sch.get(red.block_rv).reads for w in weight_params(func))


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


def _pack_weights(sch: s_tir.Schedule, block, func: tirx.PrimFunc, v, ob: int, producers) -> list:
    """Repack every layout-free input read along `v` into `ob`-wide contiguous panels. A weight `pad_einsum`
    padded is packed by its padding block, which then runs once at compile time like the plain repack;
    returns those blocks (no longer per-call producers)."""
    weights = weight_params(func)
    pads = {}  # padded copy of a weight -> the block that writes it
    for producer in producers:
        stmt = sch.get(producer.block_rv)
        if len(stmt.reads) == 1 and any(stmt.reads[0].source.same_as(w) for w in weights):
            pads[stmt.writes[0].source] = producer.block_rv
    taken = []
    for index, region in enumerate(sch.get(block).reads):
        ranges = region.region
        pad = next((b for buf, b in pads.items() if region.source.same_as(buf)), None)
        is_weight = pad is not None or any(region.source.same_as(w) for w in weights)
        if not is_weight or not ranges or not ranges[-1].min.same_as(v) or int(region.source.shape[-1].value) % ob:
            continue
        packed = pad if pad is not None else sch.cache_read(block, index, "global")
        sch.annotate(packed, "meta_schedule.layout_rewrite_preproc", True)
        sch.transform_layout(block, ("read", index), lambda *i: (i[-1] // ob, *i[:-1], i[-1] % ob))
        if pad is not None:
            taken.append(sch.get(packed))
    return taken


def _vectorize_tile(sch: s_tir.Schedule, block, after, lanes: int) -> None:
    """Under the tile loop: vectorize the innermost loop of `block`, unroll the short ones outside it."""
    loops = sch.get_loops(block)
    index = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(after)))
    own = loops[index + 1:]
    extents = static_extents(sch, own)
    if not own or extents is None:
        return
    if _odd_vectors(extents[-1], lanes):  # three vectors: one loop step each
        own = [*own[:-1], *sch.split(own[-1], factors=[None, lanes])]
        extents = [*extents[:-1], extents[-1] // lanes, lanes]
    if extents[-1] >= 2:
        sch.vectorize(own[-1])
    for loop, n in zip(own[:-1], extents[:-1]):
        if 1 < n <= MAX_UNROLL:
            sch.unroll(loop)
