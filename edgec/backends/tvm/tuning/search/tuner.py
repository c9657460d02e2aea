"""`edgec tune`: MetaSchedule search over a model's kernels, measured on this host or on boards over TVM RPC
(`remote`), into a database.

Per target, only workloads not yet in the database are tuned (a rerun resumes; a kernel shape
another model already brought is skipped). Each new workload is first measured as edgec's rules
schedule it; compile later uses a database schedule only where it measured faster than that.
The search is MetaSchedule's evolutionary search with a random cost model (no xgboost here),
`trials` candidates in all, spread over the kernels by its gradient task scheduler.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field

from edgec.backends.tvm.intrinsics import arch_intrinsics_only
from edgec.backends.tvm.tuning.database.store import Store, mean_seconds
from edgec.backends.tvm.tuning.search import remote
from edgec.backends.tvm.tuning.search import tasks as tasks_mod
from edgec.backends.tvm.tuning.search.baseline import measure_rules
from edgec.backends.tvm.tuning.search.workers import in_process_builder, local_runner, workers_without_torch
from edgec.errors import UnsupportedError
from edgec.runtime.remote import BoardLost
from edgec.runtime.remote.session import BoardSpec
from edgec.targets import Target, host_arch, local_cuda_archs, missing_cpu_features, resolve_target


@dataclass
class TuneReport:
    target: str
    database: str  # the target's directory in the tuning database
    kernels: int  # distinct static-shape kernels in the model
    already_tuned: list[str] = field(default_factory=list)
    tuned: list[dict] = field(default_factory=list)  # {"task", "rules_ms", "best_ms", "trials"}
    symbolic: list[str] = field(default_factory=list)  # left to the rules: MetaSchedule cannot measure them
    seconds: float = 0.0
    measured_on: str = "this host"  # or the boards: "N board(s) under key K on tracker H:P (...)"

    def to_json(self) -> dict:
        return dict(self.__dict__)


def check_tunable(target: Target) -> None:
    """Tuning measures candidates, so the target must run here: refuse with the reason otherwise."""
    if target.device == "cuda":
        if not set(target.gpu_archs) & set(local_cuda_archs()):
            raise UnsupportedError(f"cannot tune target '{target.name}' here: tuning measures every candidate "
                                   f"kernel on an {' or '.join(target.gpu_archs)} GPU and this host has none; run "
                                   "`edgec tune` on a machine with that GPU")
        raise UnsupportedError(f"cannot tune target '{target.name}': edgec tunes CPU targets only so far")
    if target.arch != host_arch():
        raise UnsupportedError(f"cannot tune target '{target.name}' here: its code runs on {target.arch} and this "
                               f"host is {host_arch()}; run `edgec tune` on the board itself")
    missing = missing_cpu_features(target.cpu_features)
    if missing:
        raise UnsupportedError(f"cannot tune target '{target.name}' here: this CPU lacks {', '.join(missing)}, "
                               "which its code needs")


def tune_model(model_path: str, target_name: str, trials: int, db_dir: str, input_shapes: dict | None = None,
               log=lambda line: None, seed: int = 0, board: BoardSpec | None = None) -> TuneReport:
    """Tune the model's kernels not yet in db_dir for the target with `trials` measured candidates in all,
    measured here or on the boards `board` names. A model whose kernels all have symbolic shapes (an exported
    zoo model's batch) cannot be tuned: that is an error naming the --input-shape to add. The database changes
    only when the tune completes."""
    start = time.perf_counter()
    if trials < 1:
        raise UnsupportedError(f"--trials {trials}: must be at least 1")
    target = resolve_target(target_name)  # prepares and imports TVM
    import tvm

    if board is None:
        check_tunable(target)
        measured_on, boards = "this host", 0
    else:
        measured_on, boards = remote.check_board(board, target)  # refuses before anything is built
    tvm_target = tvm.target.Target(target.tvm)
    found, symbolic = tasks_mod.extract(tasks_mod.fused_module(model_path, target, input_shapes), target)
    if not found and symbolic:
        raise UnsupportedError(f"{model_path}: all {len(symbolic)} kernels have symbolic shapes, and tuning measures "
                               f"fixed ones: add {_fixed_shapes(model_path, input_shapes)} to `edgec tune`, and the "
                               "same to `edgec compile` so it finds the tuned kernels")
    unique = {}
    for task in found:  # one workload twice in a model is one task, weighted by both calls
        if task.key in unique:
            unique[task.key].weight += task.weight
        else:
            unique[task.key] = task
    store = Store(db_dir, target)
    kernels = store.kernels()
    todo = [t for t in unique.values() if kernels.get(t.key, {}).get("trials") is None]
    report = TuneReport(target.name, str(store.dir), len(unique), symbolic=symbolic, measured_on=measured_on,
                        already_tuned=[t.name for t in unique.values() if t not in todo])
    log(f"{len(unique)} kernels: {len(report.already_tuned)} already tuned, {len(todo)} to tune, "
        f"{len(symbolic)} with symbolic shapes left to the rules; measured on {measured_on}")
    if todo:
        with store.staged() as staged, workers_without_torch():
            if board is None:
                builder, runner = in_process_builder(), local_runner()
            else:
                builder, runner = in_process_builder(remote.shared_library_export(target)), remote.runner(board, boards)
            try:
                rules = measure_rules(todo, tvm_target, builder, runner)
                log("rules-only kernels measured; searching")
                database = staged.database()
                _search(todo, tvm_target, target.arch, trials, builder, runner, database, seed)
            except Exception as e:
                why = remote.lost(str(e)) if board is not None else None
                if why:
                    raise BoardLost(f"tune stopped, no board left to measure on: {why}; the tuning database "
                                    f"{store.dir} is unchanged") from None
                raise
            for task in todo:
                best = database.get_top_k(database.commit_workload(task.mod), 1)
                entry = {"task": task.name, "rules_s": rules[task.key], "trials": _count(database, task.mod),
                         "best_s": mean_seconds(best[0].run_secs) if best else None}
                kernels[task.key] = entry
                report.tuned.append({"task": task.name, "rules_ms": _ms(entry["rules_s"]),
                                     "best_ms": _ms(entry["best_s"]), "trials": entry["trials"]})
            staged.save_kernels(kernels)
            staged.keep_best_records()
    report.seconds = time.perf_counter() - start
    return report


def _search(todo, tvm_target, arch: str, trials: int, builder, runner, database, seed: int) -> None:
    from tvm.s_tir import meta_schedule as ms

    per_iter = max(2, min(32, trials // len(todo)))
    strategy = ms.search_strategy.EvolutionarySearch(population_size=max(64, 4 * per_iter),
                                                     init_min_unmeasured=max(16, per_iter))
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)  # its console log: warnings only
    with tempfile.TemporaryDirectory(prefix="edgec-tune-") as work_dir:
        loggers = ms.logging.get_loggers_from_work_dir(work_dir, [t.name for t in todo])
        with arch_intrinsics_only(arch):
            contexts = [ms.TuneContext(mod=t.mod, target=tvm_target, space_generator="post-order-apply",
                                       search_strategy=strategy, task_name=t.name, logger=logger,
                                       rand_state=seed + i, num_threads=os.cpu_count() or 1).clone()
                        for i, (t, logger) in enumerate(zip(todo, loggers))]
        ms.tune_tasks(tasks=contexts, task_weights=[float(t.weight) for t in todo], work_dir=work_dir,
                      max_trials_global=trials, num_trials_per_iter=per_iter, builder=builder, runner=runner,
                      database=database, cost_model="random", task_scheduler="gradient")


def _count(database, mod) -> int:
    return len(database.get_top_k(database.commit_workload(mod), 1 << 30))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 4)


def _fixed_shapes(model_path: str, input_shapes: dict | None) -> str:
    """`--input-shape input=1x1x28x28` for each input with symbolic dims, taking 1 for them."""
    from edgec.frontend.loader import dims_of, graph_inputs, load_model

    model = load_model(model_path, input_shapes)
    fixed = [f"--input-shape {v.name}={'x'.join(str(d) if isinstance(d, int) else '1' for d in dims_of(v))}"
             for v in graph_inputs(model) if any(not isinstance(d, int) for d in dims_of(v))]
    return " ".join(fixed) or "--input-shape NAME=DIMS"
