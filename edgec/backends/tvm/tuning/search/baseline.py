"""The bar a tuned schedule must beat: each kernel scheduled by edgec's rules alone, measured with
the same builder and runner MetaSchedule's candidates get."""

from __future__ import annotations

import os
import shutil

from edgec.backends.tvm.tuning.database.store import mean_seconds
from edgec.backends.tvm.tuning.search.tasks import Task


def rules_schedule(mod, tvm_target):
    """The task's module as compile schedules it without a database (edgec's rules, else TVM's default)."""
    from tvm.s_tir import dlight

    from edgec.backends.tvm.schedules.cpu import cpu_rules

    with tvm_target:  # on a clone: ApplyDefaultSchedule writes into the module it is given
        return dlight.ApplyDefaultSchedule(*cpu_rules())(mod.clone())


def measure_rules(tasks: list[Task], tvm_target, builder, runner) -> dict[str, float | None]:
    """{task key: mean seconds of the rules-only kernel}; None where it failed to build or run."""
    from tvm.s_tir import meta_schedule as ms

    scheduled = [rules_schedule(t.mod, tvm_target) for t in tasks]
    built = builder.build([ms.builder.BuilderInput(m, tvm_target) for m in scheduled])
    inputs, owners = [], []
    for task, mod, result in zip(tasks, scheduled, built):
        if result.error_msg is None:
            inputs.append(ms.runner.RunnerInput(result.artifact_path, "cpu",
                                                ms.arg_info.ArgInfo.from_entry_func(mod, remove_preproc=True)))
            owners.append(task.key)
    times: dict[str, float | None] = {t.key: None for t in tasks}
    for key, future in zip(owners, runner.run(inputs)):
        result = future.result()
        if result.error_msg is None:
            times[key] = mean_seconds(result.run_secs)
    for result in built:
        if result.artifact_path is not None:
            shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)
    return times
