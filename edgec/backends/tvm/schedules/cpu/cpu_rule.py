"""The shared shape of edgec's CPU rules: decline anything that is not a CPU PrimFunc they can schedule."""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.base import ScheduleRule

from edgec.backends.tvm.schedules.target_facts import is_cpu


class CpuRule(ScheduleRule):
    """`apply` returns `_schedule(func, target)`, or None for non-CPU targets, non-PrimFuncs and any
    schedule primitive that refuses (so the function keeps TVM's default lowering)."""

    def apply(self, func: tirx.PrimFunc, target, tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not is_cpu(target):
            return None
        try:
            return self._schedule(func, target)
        except s_tir.ScheduleError:
            return None

    def _schedule(self, func: tirx.PrimFunc, target):
        raise NotImplementedError
