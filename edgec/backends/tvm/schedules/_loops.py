"""Loop helpers shared by the CPU rules."""

from __future__ import annotations

from tvm import s_tir

# Below this many loop iterations (of 32-bit elements in the Gemm rule: 4 of an 8-bit max pool's count as
# one) a kernel runs on one core: the thread pool's fork/join would cost more than it saves (the zoo
# ResNet-18's u8 stem pool: 0.5 us on one thread, 1.1-1.4 us on two).
MIN_PARALLEL_WORK = 1 << 15

# Storage scope of a micro-kernel's accumulator tile. TVM 0.27 lowers a CPU buffer to a stack array only
# when its scope is "global" (and it is under 1 KiB: edgec's TIR pipeline, `pipelines/tir.py`, lifts that
# limit to 8 KiB for AVX-512's larger tiles); a "local" one is taken from the workspace pool, so a
# "local" tile cost one TVMBackendAllocWorkspace/FreeWorkspace pair per tile, in every tile of every call
# (18% of the zoo ResNet-18 int8 run). On the stack, LLVM keeps the tile in registers.
ACCUMULATOR_SCOPE = "global"


# Vectors per vectorized loop iteration, widest first. One 8 x float -> int32 vector per iteration took
# 3.3x longer than four (the zoo ResNet-18's int8 input packing: LLVM shuffles the unrolled 8-wide loop).
WIDE_VECTORS = (4, 2, 1)


def attempt(primitive, block) -> bool:
    """Apply a schedule primitive (`sch.compute_inline`, `sch.reverse_compute_inline`) to `block`; False when TVM
    refuses, leaving the schedule as it was."""
    try:
        primitive(block)
    except s_tir.ScheduleError:
        return False
    return True


def static_extents(sch: s_tir.Schedule, loops) -> list[int] | None:
    """Loop extents as Python ints, or None when any is symbolic."""
    extents = []
    for loop in loops:
        extent = sch.get(loop).extent
        if not hasattr(extent, "value"):
            return None
        extents.append(int(extent.value))
    return extents


def loop_extents(sch: s_tir.Schedule, loops) -> list[int | None]:
    """Loop extents as Python ints; None for a symbolic one (a dynamic batch)."""
    return [int(e.value) if hasattr(e, "value") else None for e in (sch.get(lp).extent for lp in loops)]


def known_work(extents: list[int | None]) -> int:
    """Iterations of a nest, counting a symbolic extent as 1 (a dynamic batch served one at a time)."""
    total = 1
    for n in extents:
        total *= n or 1
    return total


def parallel_vectorize(sch: s_tir.Schedule, block, lanes: int) -> bool:
    """Schedule one loop nest as a data-parallel stage.

    The innermost loop is split by the widest of 4, 2 or 1 vectors dividing it and vectorized (or
    vectorized whole when it is shorter than two vectors); the loops outside are fused into one parallel loop
    when the nest is large enough. Returns False (leaving the nest untouched) when the innermost extent is symbolic.
    """
    loops = sch.get_loops(block)
    extents = loop_extents(sch, loops)
    if not loops or extents[-1] is None:
        return False
    inner, n_inner = loops[-1], extents[-1]
    outer = list(loops[:-1])
    width = next((lanes * m for m in WIDE_VECTORS if n_inner % (lanes * m) == 0 and n_inner > lanes * m), None)
    if width:
        rest, vec = sch.split(inner, factors=[None, width])
        outer.append(rest)
        sch.vectorize(vec)
    elif 2 <= n_inner <= 2 * lanes:
        sch.vectorize(inner)
    else:
        outer.append(inner)
    if outer and known_work(extents) >= MIN_PARALLEL_WORK:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    return True
