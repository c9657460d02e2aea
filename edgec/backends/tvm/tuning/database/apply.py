"""`edgec compile --tuning-db DIR`: MetaSchedule's best schedule for each kernel that beat edgec's rules.

Only a workload whose best measured record is faster than its rules-only time (both measured by
`edgec tune` on the same runner) is applied; every other kernel is left to the rules, so a
database never makes a kernel slower than compiling without it.
"""

from __future__ import annotations

from edgec.backends.tvm.tuning.database.store import Store, mean_seconds, workload_key
from edgec.errors import EdgecError
from edgec.targets import Target


class TunedKernels:
    """The winning records of one target's database, and which of a model's kernels they scheduled."""

    def __init__(self, store: Store, database, winners: int, label: str):
        self.store = store
        self.label = label  # how the manifest names the database
        self.database = database  # MemoryDatabase holding only winning records
        self.winners = winners
        self.applied: list[str] = []

    @classmethod
    def load(cls, root: str, target: Target, label: str | None = None) -> TunedKernels:
        from tvm.s_tir import meta_schedule as ms

        store = Store(root, target)
        if not store.exists():
            tuned = sorted(p.name for p in store.root.glob("*/kernels.json")) if store.root.is_dir() else []
            raise EdgecError(f"tuning database {root} has no records for target '{target.name}' (looked in "
                             f"{store.dir}; it has {', '.join(p.split('/')[0] for p in tuned) or 'none'}); run "
                             f"`edgec tune MODEL --target {target.name} --tuning-db {root}` first")
        kernels = store.kernels()
        source = store.database()
        winners = ms.database.MemoryDatabase()
        count = 0
        for record in _best_records(source):
            rules = kernels.get(workload_key(record.workload.mod), {}).get("rules_s")
            if rules is not None and mean_seconds(record.run_secs) < rules:
                workload = winners.commit_workload(record.workload.mod)
                winners.commit_tuning_record(ms.database.TuningRecord(record.trace, workload, record.run_secs,
                                                                      record.target, record.args_info))
                count += 1
        return cls(store, winners, count, label or root)

    def apply_pass(self):
        """A module pass: schedule the PrimFuncs the winners cover (and remember their names)."""
        import tvm
        from tvm import relax, tirx

        @tvm.transform.module_pass(opt_level=0, name="edgec.ApplyTuningDatabase")
        def _apply(mod, _ctx):
            before = {gv.name_hint for gv, f in mod.functions_items() if _scheduled(f, tirx)}
            with self.database:
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            self.applied = sorted(gv.name_hint for gv, f in mod.functions_items()
                                  if _scheduled(f, tirx) and gv.name_hint not in before)
            return mod

        return _apply

    def summary(self) -> dict:
        """What backend_config records: the database, and the kernels it scheduled."""
        return {"database": self.label, "target_key": self.store.dir.name,
                "winning_records": self.winners, "kernels_from_db": self.applied}


def _best_records(database) -> list:
    """The fastest record of each workload."""
    best = {}
    for record in database.get_all_tuning_records():
        if record.run_secs is None:
            continue
        key = record.workload  # records of one workload share its object (hash and == by identity)
        if key not in best or mean_seconds(record.run_secs) < mean_seconds(best[key].run_secs):
            best[key] = record
    return list(best.values())


def _scheduled(func, tirx) -> bool:
    return isinstance(func, tirx.PrimFunc) and bool(func.attrs and func.attrs.get("tirx.is_scheduled", False))

