"""CUDA rule: an implicit-GEMM convolution (`rewrites.conv_gemm`) on the tensor cores.

The schedule is dlight's wmma matmul schedule (`MatmulTensorization`: 16x16x16 fp16 fragments, the
conv's accumulator dtype (fp16: the CUDA pipeline's ToMixedPrecision(out_dtype="float16")), im2col and
padding inlined into double-buffered shared-memory loads, the epilogue fused into the store) with one
change: its output tile is chosen per conv. dlight always takes 128x128 tiles of 16 warps and leaves
tensor cores alone below 65 rows or columns; a batch-1 ResNet's late convs (7x7 = 49 rows, 512
columns) then run on 4 thread blocks of a 132-SM GPU. Here the tile is the largest of 128x128 /
64x128 / 64x64 / 32x64 / 32x32 that still gives every SM a block, else the smallest.
fp32 convs go on to dlight's Matmul rule (SIMT tiling), and so do fp16 convs the wmma schedule fails on
(with a symbolic batch, some padded loads do not nest), marked so that rule does not retry tensor cores.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import get_root_block
from tvm.s_tir.dlight.gpu.base import GPUScheduleRule
from tvm.s_tir.dlight.gpu.matmul import (
    Matmul,
    auto_inline_consumer_chain,
    auto_inline_producers,
    check_sm_version,
    get_index_map,
)

from edgec.backends.tvm.rewrites.conv_gemm import GEMM_BLOCK

FRAGMENT = 16  # wmma m16n16k16
WARP = 32
VECTOR = 4  # fp16 elements per shared-memory load
K_FRAGMENTS = 4  # a 64-deep K slice per pipeline stage
# (warps along rows, fragments per warp along rows, warps along columns, fragments per warp along columns)
TILES = ((4, 2, 4, 2), (2, 2, 4, 2), (2, 2, 2, 2), (2, 1, 2, 2), (2, 1, 2, 1))


class ConvTensorCore(GPUScheduleRule):
    def apply(self, func: tirx.PrimFunc, target, tunable: bool):
        if (not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target)
                or check_sm_version(str(target.attrs.get("arch", ""))) < 70):
            return None
        sch = s_tir.Schedule(func)
        gemm = [b for b in sch.get_child_blocks(get_root_block(sch)) if sch.get(b).name_hint == GEMM_BLOCK]
        if not gemm or any(str(r.source.dtype) != "float16" for r in sch.get(gemm[0]).reads):
            return None
        try:
            return _schedule(sch, gemm[0], sm_count(target))
        except s_tir.ScheduleError:
            return Matmul().apply(func.with_attr("dlight.do_not_tensorize", True), target, tunable)


def sm_count(target) -> int:
    """SMs to fill: the target's own count when it names one, else the arch's usual part (Jetson AGX Orin's
    16 for sm_87), else an H100's 132."""
    count = target.attrs.get("multi_processor_count")
    return int(count) if count else MULTIPROCESSORS.get(str(target.attrs.get("arch", "")), 132)


MULTIPROCESSORS = {"sm_87": 16, "sm_80": 108, "sm_90": 132}


def choose_tile(rows, cols, multiprocessors: int) -> tuple[int, int, int, int]:
    """The largest tile in TILES with at least one block per SM for a rows x cols output (symbolic rows
    count as large), else the one with the most blocks."""
    def blocks(tile):
        warps_i, frags_i, warps_j, frags_j = tile
        m = rows if isinstance(rows, int) else 1 << 20
        return -(-m // (warps_i * frags_i * FRAGMENT)) * -(-cols // (warps_j * frags_j * FRAGMENT))

    return next((t for t in TILES if blocks(t) >= multiprocessors), TILES[-1])


def _schedule(sch: s_tir.Schedule, main_block, multiprocessors: int) -> s_tir.Schedule:
    from edgec.backends.tvm.intrinsics import only_intrinsics

    get_wmma_intrin_group = only_intrinsics("cuda").get_wmma_intrin_group
    accumulator = str(sch.get(main_block).writes[0].source.dtype)
    reindex_a = sch.reindex(main_block, ("read", 0))
    reindex_b = sch.reindex(main_block, ("read", 1))
    reindex_c = sch.reindex(main_block, ("write", 0))
    matmul_map, a_map, b_map, c_map = get_index_map(sch.get(main_block))
    sch.transform_layout(reindex_a, ("write", 0), a_map)
    sch.transform_layout(reindex_b, ("write", 0), b_map)
    sch.transform_layout(reindex_c, ("read", 0), c_map)
    sch.transform_block_layout(main_block, matmul_map)

    _, rows, cols, _ = (v.dom.extent for v in sch.get(main_block).iter_vars)
    static = lambda e: int(e) if isinstance(e, tirx.IntImm) else e  # noqa: E731
    warps_i, frags_i, warps_j, frags_j = choose_tile(static(rows), int(cols), multiprocessors)
    warps = warps_i * warps_j
    sch.pad_einsum(main_block, [1, FRAGMENT * warps_i * frags_i, FRAGMENT * warps_j * frags_j,
                                FRAGMENT * K_FRAGMENTS])

    batch, i, j, k = sch.get_loops(main_block)
    i, i_inner = sch.split(i, factors=[None, FRAGMENT])
    j, j_inner = sch.split(j, factors=[None, FRAGMENT])
    k, k_inner = sch.split(k, factors=[None, FRAGMENT])
    sch.reorder(i, j, k, i_inner, j_inner, k_inner)
    block_inner = main_block
    block_outer = sch.blockize(i_inner)

    i0, i1, i2, i3 = sch.split(i, factors=[None, 1, warps_i, frags_i])
    j0, j1, j2, j3 = sch.split(j, factors=[1, None, warps_j, frags_j])
    k0, k1 = sch.split(k, factors=[None, K_FRAGMENTS])
    sch.annotate(k0, "software_pipeline_order", [0, 3, 1, 4, 5, 2, 6])
    sch.annotate(k0, "software_pipeline_stage", [0, 0, 0, 0, 0, 1, 1])
    sch.annotate(k1, "software_pipeline_order", [0, 1, 2])
    sch.annotate(k1, "software_pipeline_stage", [0, 0, 1])
    sch.reorder(i0, j0, i1, j1, j2, i2, k0, k1, i3, j3)
    sch.bind(batch, "blockIdx.z")
    sch.bind(sch.fuse(i0, j0), "blockIdx.x")
    sch.bind(sch.fuse(i1, j1), "blockIdx.y")
    thread_y = sch.fuse(j2, i2)
    sch.bind(thread_y, "threadIdx.y")

    def fetch_to_shared(index: int):
        read = sch.cache_read(block_outer, index, "shared.dyn")
        sch.compute_at(read, k0)
        fused = sch.fuse(*sch.get_loops(read)[-2:])
        _, f_1, f_2, f_3 = sch.split(fused, factors=[None, warps, WARP, VECTOR])
        sch.bind(f_2, "threadIdx.x")
        sch.bind(f_1, "threadIdx.y")
        sch.vectorize(f_3)
        sch.storage_align(read, 0, axis=-2, factor=16, offset=8)
        sch.annotate(read, "tirx.manifest_shared_memory_local_stage", 1)
        sch.annotate(read, "double_buffer_scope", 0)
        return read

    a_shared, b_shared = fetch_to_shared(0), fetch_to_shared(1)
    auto_inline_producers(sch, a_shared)  # padding and im2col become the shared-memory load's indexing
    auto_inline_producers(sch, b_shared)
    a_frag = sch.cache_read(block_outer, 0, "wmma.matrix_a")
    b_frag = sch.cache_read(block_outer, 1, "wmma.matrix_b")
    sch.compute_at(a_frag, k1)
    sch.compute_at(b_frag, k1)
    to_global = sch.cache_write(block_outer, 0, "shared.dyn")
    sch.storage_align(to_global, 0, -2, 16, 4)
    store = sch.cache_write(block_outer, 0, "wmma.accumulator")
    sch.reverse_compute_at(store, thread_y)
    sch.reverse_compute_at(to_global, thread_y)
    _tile_16x16(sch, store)
    init = sch.get_child_blocks(sch.decompose_reduction(block_outer, k0))[0]

    intrins = get_wmma_intrin_group(load_scope="shared.dyn", store_scope="shared.dyn", in_dtype="float16",
                                    out_dtype=accumulator, trans_b=True)
    for frag, intrin in ((a_frag, intrins["load_a"]), (b_frag, intrins["load_b"])):
        outer_i, outer_j, inner = _tile_16x16(sch, frag)
        sch.unroll(outer_i)
        sch.unroll(outer_j)
        sch.tensorize(inner, intrin)
    sch.tensorize(sch.get_loops(init)[-2], intrins["init"])
    sch.tensorize(sch.get_loops(store)[-2], intrins["store"])
    sch.tensorize(sch.get_loops(block_inner)[-3], intrins["compute"])
    auto_inline_consumer_chain(sch, to_global)  # bias, ReLU, residual add, cast: applied on the way out
    _, f_1, f_2 = sch.split(sch.fuse(*sch.get_loops(to_global)[-2:]), factors=[None, WARP, VECTOR])
    sch.bind(f_1, "threadIdx.x")
    sch.vectorize(f_2)
    return sch


def _tile_16x16(sch: s_tir.Schedule, block):
    """Split the block's two innermost loops into 16x16 fragments: (outer i, outer j, inner i)."""
    i, j = sch.get_loops(block)[-2:]
    i0, i1 = sch.split(i, factors=[None, FRAGMENT])
    j0, j1 = sch.split(j, factors=[None, FRAGMENT])
    sch.reorder(i0, j0, i1, j1)
    return i0, j0, i1
