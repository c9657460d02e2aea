"""Parallel loops of the kernels no rule scheduled: serial when one launch does too little work.

TVM's hand-written CPU kernels (TOPI's IR builders: NMS, scatter, scan, searchsorted, ...) mark
loops parallel whatever their trip count, some inside serial loops. Each parallel loop costs one
fork/join of TVM's thread pool per launch. The NMS kernel's suppression loop is parallel inside the loop
over the boxes it keeps, so it launched once per kept box (the zoo detector: 30 launches of at most
63 IoUs each). On 2 threads that kernel took 280-390 us instead of 17-38 us serial, and up to 2.2 ms
while another process held the second core.

Rule: a parallel loop runs serially when one launch does fewer than MIN_PARALLEL_WORK iterations, the
threshold the Gemm rule applies. Work is counted per leaf statement (store or call) as the product of
the trip counts of the loops from the parallel loop down to it; a trip count is the loop's extent
with the function's symbolic shape dims set to 1 (a dynamic batch served one at a time), and 1 when it
is data-dependent (a count loaded from a buffer) or for a while loop. Serial order is always a valid
order of a parallel loop, so results do not change. Kernels a rule (or a tuning database) scheduled
keep their own parallel loops.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import sym, tirx

from edgec.backends.tvm.schedules._loops import MIN_PARALLEL_WORK


def serial_small_parallel():
    """A module pass: `serialize_small_parallel` on every PrimFunc no rule scheduled."""

    @tvm.transform.module_pass(opt_level=0, name="edgec.SerialSmallParallel")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        for gvar, func in list(mod.functions_items()):
            if isinstance(func, tirx.PrimFunc) and not (func.attrs and func.attrs.get("tirx.is_scheduled", False)):
                mod[gvar] = serialize_small_parallel(func)
        return mod

    return _pass


def serialize_small_parallel(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """`func` with each parallel loop doing fewer than MIN_PARALLEL_WORK iterations per launch made serial."""
    shape_vars = set()
    for param in func.params:  # buffers, and the symbolic dims passed as scalars
        for dim in param.shape if hasattr(param, "shape") else [param]:
            tvm_ffi.structural_walk(dim, (tirx.Var, shape_vars.add), order="post")
    analyzer = sym.Analyzer()
    for var in shape_vars:
        analyzer.bind(var, 1)
    scale = [1]  # trip-count product of the loops open at this point
    open_parallel = []  # per open parallel loop: [scale outside it, work so far]

    def trip(loop) -> int:
        extent = analyzer.simplify(loop.extent) if isinstance(loop, tirx.For) else None
        return max(int(extent.value), 1) if isinstance(extent, tirx.IntImm) else 1

    def on_loop(loop, mutator):
        outside = scale[-1]
        scale.append(outside * trip(loop))
        parallel = isinstance(loop, tirx.For) and loop.kind == tirx.ForKind.PARALLEL
        if parallel:
            open_parallel.append([outside, 0])
        new = mutator.default_mutate(loop)
        scale.pop()
        if parallel and open_parallel.pop()[1] < MIN_PARALLEL_WORK:
            return tirx.For(new.loop_var, new.min, new.extent, tirx.ForKind.SERIAL, new.body, None,
                            new.annotations, new.step, new.span)
        return new

    def on_leaf(stmt, _mutator):
        for entry in open_parallel:
            entry[1] += scale[-1] // entry[0]
        return stmt

    return tvm_ffi.structural_mutate(func, [(tirx.For, on_loop), (tirx.While, on_loop),
                                            (tirx.BufferStore, on_leaf), (tirx.Evaluate, on_leaf)])
