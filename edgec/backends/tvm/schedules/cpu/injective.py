"""Injective rule: elementwise, broadcast, transpose/reshape and padding chains.

Strategy: inline every block it can into its consumer (or producer), so a chain becomes one loop
nest reading the inputs once; then each remaining nest gets its innermost loop vectorized to the
target's vector width and its outer loops fused into one parallel loop (see `_loops`).
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline

from edgec.backends.tvm.schedules._loops import parallel_vectorize
from edgec.backends.tvm.schedules.cpu.cpu_rule import CpuRule
from edgec.backends.tvm.schedules.target_facts import vector_lanes


class Injective(CpuRule):
    """Parallel + vectorized loop nests for functions whose blocks are all spatial."""

    def _schedule(self, func: tirx.PrimFunc, target):
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if not blocks or not all(b.is_injective() for b in blocks):
            return None
        remaining = try_inline(sch, list(blocks))
        scheduled = False
        for info in remaining:
            bits = sch.get(info.block_rv).writes[0].source.dtype.bits
            scheduled |= parallel_vectorize(sch, info.block_rv, vector_lanes(target, bits))
        return sch if scheduled else None
