"""The kernels `edgec compile` would schedule for a model: its fused PrimFuncs, as tuning tasks.

The model goes through the same steps as `edgec compile --backend tvm` up to the schedule rules
(ONNX load, graph passes, the host NMS cut, TVM import, edgec's Relax rewrites, legalize + fuse),
so each task's workload is exactly what compile looks up in the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgec.backends.tvm.tuning.database.store import workload_key
from edgec.targets import Target


@dataclass
class Task:
    name: str  # the fused function's name in this model
    mod: object  # tvm.IRModule with the PrimFunc as "main", as MetaSchedule keys it
    weight: int  # calls per inference
    key: str  # the workload's structural hash (the database key, with the target)


def fused_module(model_path: str, target: Target, input_shapes: dict | None = None, precision: str = "fp32"):
    """The Relax module right before edgec's schedule rules run, as compile builds it."""
    import tvm

    from edgec.backends import get_backend, nms_placement
    from edgec.backends.tvm.backend import import_relax
    from edgec.backends.tvm.pipelines import cpu
    from edgec.frontend.loader import load_model
    from edgec.passes import DEFAULT_PIPELINE, PassContext, run_pipeline

    graph = load_model(model_path, input_shapes)
    graph, _ = run_pipeline(graph, DEFAULT_PIPELINE, PassContext(model_path=model_path, validate=False))
    graph, _ = nms_placement.plan(graph, get_backend("tvm"), target)
    mod, _ = import_relax(graph, model_path)
    tvm_target = tvm.target.Target(target.tvm)
    with tvm_target:
        return tvm.transform.Sequential(cpu.fused_passes(tvm_target, precision))(mod)


def extract(fused, target: Target) -> tuple[list[Task], list[str]]:
    """(tunable tasks, names of kernels left to the rules: symbolic shapes, which MetaSchedule cannot measure)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    tasks, symbolic = [], []
    for task in ms.relax_integration.extract_tasks(fused, tvm.target.Target(target.tvm)):
        mod = task.dispatched[0]
        if _has_symbolic_shape(mod["main"]):
            symbolic.append(task.task_name)
            continue
        tasks.append(Task(task.task_name, mod, int(task.weight), workload_key(mod)))
    return tasks, symbolic


def _has_symbolic_shape(func) -> bool:
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    try:
        ArgInfo.from_prim_func(func)  # the runner's argument shapes: integers only
    except Exception:  # TVM: "Cannot convert ... Array[ir.Var] to Array<ir.IntImm>"
        return True
    return False
