"""DotGemm rule: conv2d/matmul tensorized with x86 dot-product instructions, for two operand families:
u8 x s8 -> int32 (`int8_intrinsics`: what `integer_qdq` gives an int8 model) and bf16 x bf16 -> fp32
(`bf16_intrinsics`: what `rewrites.bfloat16` gives `--precision bf16`).

Pattern: the Gemm rule's single `S..SR..R` reduction (epilogue blocks after it, copies before it),
where the reduction is `C[.., v] += acc(A[.., k]) * acc(W[.., k, v])` with A and W of the family's
operand types (W a layout-free, constant input) and C of its accumulator type, `v` the innermost
spatial iterator (output channel) and `k` the innermost reduction iterator (input channel): conv2d in
NHWC/HWIO and matmul [M, K] x [K, N].

Micro-kernel: one instruction computes `lanes` accumulators from `depth` consecutive activations (one
32-bit broadcast) and a `lanes x depth` weight block:
- int8 (depth 4): VNNI (avx512vnni) vpdpbusd.512, 16 lanes; AVX-VNNI (avxvnni) vpdpbusd.256, 8 lanes;
  AVX-512BW vpmaddubsw + vpmaddwd.512, 16 lanes; AVX2 vpmaddubsw + vpmaddwd (256-bit), 8 lanes.
  vpmaddubsw saturates a pair sum at int16: `integer_qdq` keeps int8 weights only where no pair of
  weights can overflow (7-bit weights, ONNX Runtime's reduce_range), else int16, which this rule
  declines and the Gemm rule runs in plain int32.
- bf16 (depth 2): AVX512_BF16 vdpbf16ps.512, 16 lanes, and (AVX-512VL) vdpbf16ps.256, 8 lanes.
- Output channels that 16 lanes do not divide take the target's 8-lane form, so a kernel's
  instruction family does not depend on its channel count.
Targets without the family's instructions are declined here: int8 gets the Gemm rule's int32 vector
code, bf16 the Gemm rule's fp32 code on operands TVM's legalization widens from bf16.

Tiling follows the Gemm rule: rows with no good divisor are padded (`padding`, `pad_einsum`: ViT's 197
tokens), `v` split `vo x vm x lanes`, the next spatial axis `ro x ri`
(register block of `ri * vm` accumulators), `k` split `ko x depth`; loop order
fused(vo, outer spatial, ro) [parallel] > other reductions > ko > ri [unrolled] > vm [unrolled] >
the intrinsic (lanes x depth). Weights are repacked at compile time `[.., K, N] -> [N/ob, .., K/depth, ob,
depth]` (a `layout_rewrite_preproc` block the pipeline folds into a constant), so each intrinsic reads
one contiguous `lanes x depth` block. Zero-width padding copies are inlined; real padding is computed
per tile, inside the parallel loop (a stage of its own for pixels of under 16 channels: a packed image);
epilogues run on the register tile.
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx
from tvm.ir import TensorLoad
from tvm.s_tir.dlight.base import try_inline

from edgec.backends.tvm.schedules._loops import ACCUMULATOR_SCOPE, MIN_PARALLEL_WORK, parallel_vectorize, static_extents
from edgec.backends.tvm.schedules.cpu import bf16_intrinsics, int8_intrinsics
from edgec.backends.tvm.schedules.cpu.cpu_rule import CpuRule
from edgec.backends.tvm.schedules.cpu.gemm import (
    OPERAND_REGISTERS,
    _pad,
    _vars_in,
    _vectorize_tile,
    choose_tile,
    padding,
    schedule_reduction,
    spill_limit,
    weight_params,
)
from edgec.backends.tvm.schedules.target_facts import vector_lanes, vector_registers

FAMILIES = (int8_intrinsics, bf16_intrinsics)  # each: ACTIVATION, WEIGHT, ACCUMULATOR, DEPTH, dot_products_for,
# panel, registered, imports
PER_TILE_PAD_CHANNELS = 16  # a padded pixel's channels copied as one vector per tile


class DotGemm(CpuRule):
    """Schedule an int8 (u8 x s8 -> i32) or bf16 (-> fp32) conv2d/matmul as a tensorized dot-product micro-kernel."""

    def _schedule(self, func: tirx.PrimFunc, target):
        split = schedule_reduction(func)
        if split is None:
            return None
        sch, producers, red, consumers = split
        n_reduce = red.dom_kind().count("R")
        n_spatial = len(red.iters) - n_reduce
        v, k = red.iters[n_spatial - 1].var, red.iters[-1].var
        matches = ((f, _operand_indices(sch.get(red.block_rv), func, v, k, f)) for f in FAMILIES)
        family, weight_index = next(((f, i) for f, i in matches if i is not None), (None, None))
        dots = family.dot_products_for(target) if family else []
        if not dots:
            return None
        depth = family.DEPTH
        loops = sch.get_loops(red.block_rv)
        vector_and_reductions = static_extents(sch, loops[n_spatial - 1:])
        if vector_and_reductions is None:
            return None
        n_vec, *reduce_extents = vector_and_reductions
        dot = next((d for d in dots if n_vec % d.lanes == 0), None)
        if dot is None or reduce_extents[-1] % depth:
            return None
        register_axis = static_extents(sch, loops[n_spatial - 2:n_spatial - 1]) if n_spatial > 1 else None
        n_reg = register_axis[0] if register_axis else 1  # a symbolic batch of a matmul: no register block
        panel_rows = 1
        for n in reduce_extents:
            panel_rows *= n
        registers = vector_registers(target) - OPERAND_REGISTERS - dot.temporaries
        limit = spill_limit(target)
        live = None if limit is None else limit - dot.temporaries  # the instruction's temporaries are live too
        weight_bytes, panel = tvm.DataType(family.WEIGHT).bits // 8, family.panel(target)
        _, reg_pad = padding(n_vec, n_reg, dot.lanes, registers, panel_rows, weight_bytes, panel, live)
        padded = _pad(sch, red, n_spatial, 1, reg_pad) if reg_pad > 1 else None
        if padded is not None:  # rows with no good divisor (197 tokens); the weights stay as they are, to be packed
            sch, producers, red, consumers = padded
            n_reg = -(-n_reg // reg_pad) * reg_pad
            weight_index = _operand_indices(sch.get(red.block_rv), func, red.iters[n_spatial - 1].var,
                                            red.iters[-1].var, family)
            if weight_index is None:
                return None
        ob, rb = choose_tile(n_vec, n_reg, dot.lanes, registers, panel_rows, weight_bytes, panel, live)

        producers = _inline_producers(sch, producers, red.block_rv)
        consumers = try_inline(sch, consumers)
        _pack_dot_weights(sch, red.block_rv, weight_index, ob, depth)
        writeback = sch.cache_write(red.block_rv, 0, ACCUMULATOR_SCOPE)
        if consumers:
            sch.compute_inline(writeback)
            finals = [c.block_rv for c in consumers]
        else:
            finals = [writeback]

        loops = sch.get_loops(red.block_rv)
        spatial, reduce = loops[:n_spatial], loops[n_spatial:]
        work = panel_rows // depth  # dot-product steps per batch item (a symbolic batch counts as 1)
        for loop in spatial:
            extent = sch.get(loop).extent
            work *= int(extent.value) if hasattr(extent, "value") else 1
        vo, vm, vl = sch.split(spatial[-1], factors=[None, ob // dot.lanes, dot.lanes])
        ko, ki = sch.split(reduce[-1], factors=[None, depth])
        if n_spatial > 1:
            ro, ri = sch.split(spatial[-2], factors=[None, rb])
            outer, unrolled = [vo, *spatial[:-2], ro], [ri, vm]
        else:
            outer, unrolled = [vo], [vm]
        sch.reorder(*outer, *reduce[:-1], ko, *unrolled, vl, ki)
        tile = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if work >= MIN_PARALLEL_WORK:
            sch.parallel(tile)
        for loop in unrolled:
            sch.unroll(loop)

        producers = _pad_per_tile(sch, producers, tile)
        for final in finals:
            sch.reverse_compute_at(final, tile, preserve_unit_loops=True)
            _vectorize_tile(sch, final, after=tile, lanes=dot.lanes)
        init = sch.decompose_reduction(red.block_rv, reduce[0] if n_reduce > 1 else ko)
        _vectorize_tile(sch, init, after=tile, lanes=dot.lanes)
        sch.tensorize(vl, family.registered(dot))
        llvm_ir = family.imports(dot)
        if llvm_ir:
            sch.annotate(tile, "pragma_import_llvm", llvm_ir)
        for producer in producers:
            parallel_vectorize(sch, producer.block_rv, vector_lanes(target, 8))
        return sch


def _inline_producers(sch: s_tir.Schedule, producers: list, reduction) -> list:
    """Inline every producer except the padding the reduction reads (a conditional copy), which stays a
    stage of its own so the intrinsic reads plain activations; returns the kept ones. Producers of
    epilogue inputs (a residual's dequantize) are inlined into the epilogue."""
    read = [r.source for r in sch.get(reduction).reads]
    kept = []
    for producer in producers:
        block = sch.get(producer.block_rv)
        copy = isinstance(block.body, tirx.BufferStore) and isinstance(block.body.value, TensorLoad)
        if not copy and any(block.writes[0].source.same_as(r) for r in read):
            kept.append(producer)
        else:
            sch.compute_inline(producer.block_rv)
    return kept


def _pad_per_tile(sch: s_tir.Schedule, producers: list, tile) -> list:
    """Compute each padding stage inside the parallel tile loop (the region one tile reads) where a pixel
    holds at least PER_TILE_PAD_CHANNELS channels; returns the stages left whole. Zoo ResNet-18 on two
    threads: a whole stage ahead of the parallel loop cost 1.0-1.4 us more per 3x3 conv; per tile, the
    stem's packed 4-byte pixels (7x7 window, stride 2) took 38 -> 42 us on one thread."""
    whole = []
    for producer in producers:
        channels = static_extents(sch, sch.get_loops(producer.block_rv)[-1:])
        if channels is None or channels[0] < PER_TILE_PAD_CHANNELS:
            whole.append(producer)
            continue
        sch.compute_at(producer.block_rv, tile, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(producer.block_rv)[-1])
    return whole


def _operand_indices(block: s_tir.SBlock, func: tirx.PrimFunc, v, k, family) -> int | None:
    """Index of the weight read when `block` is `C[.., v] += acc(A[.., k]) * acc(W[.., k, v])` with A, W (a
    layout-free parameter) and C of `family`'s activation, weight and accumulator types; else None."""
    out = block.writes[0]
    if str(out.source.dtype) != family.ACCUMULATOR or not out.region or not out.region[-1].min.same_as(v):
        return None
    weights = weight_params(func)
    reads = [r for r in block.reads if not r.source.same_as(out.source)]
    if len(reads) != 2:
        return None
    weight_index = activation = None
    for index, region in enumerate(block.reads):
        ranges, dtype = region.region, str(region.source.dtype)
        if region.source.same_as(out.source) or not ranges:
            continue
        if dtype == family.ACTIVATION and ranges[-1].min.same_as(k) and not {v, k} & _vars_of(ranges[:-1]):
            activation = index
        elif (dtype == family.WEIGHT and any(region.source.same_as(w) for w in weights) and len(ranges) >= 2
              and ranges[-1].min.same_as(v) and ranges[-2].min.same_as(k) and not {v, k} & _vars_of(ranges[:-2])):
            weight_index = index
    return weight_index if activation is not None else None


def _vars_of(ranges) -> set:
    return set().union(set(), *(_vars_in(r.min) for r in ranges))


def _pack_dot_weights(sch: s_tir.Schedule, block, index: int, ob: int, depth: int) -> None:
    """Repack the weight `[.., K, N] -> [N / ob, .., K / depth, ob, depth]`, folded into a constant at compile
    time."""
    packed = sch.cache_read(block, index, "global")
    sch.annotate(packed, "meta_schedule.layout_rewrite_preproc", True)
    sch.transform_layout(block, ("read", index),
                         lambda *i: (i[-1] // ob, *i[:-2], i[-2] // depth, i[-1] % ob, i[-2] % depth))
