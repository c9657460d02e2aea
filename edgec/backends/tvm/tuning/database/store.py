"""A tuning database directory: one MetaSchedule JSON database per target, plus edgec's kernel table.

    DIR/<target key>/database_workload.json       MetaSchedule: workloads, keyed by structural hash
    DIR/<target key>/database_tuning_record.json  MetaSchedule: the fastest schedule (trace) per workload
    DIR/<target key>/kernels.json                 edgec: per workload, the rules-only time and tuning state

So a record is keyed by (workload hash, target): a conv shape shared by several models is tuned
once per target, and MetaSchedule's records never leak across targets (its queries ignore the target).
The repository ships databases in tuning/; compile uses the one for its target unless told otherwise.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgec.targets import Target

SHIPPED = Path(__file__).resolve().parents[5] / "tuning"  # databases in the repository, used by default
NO_DATABASE = "none"  # `--tuning-db none`: schedule with the rules only


def target_key(target: Target) -> str:
    """Directory name for a target: its name, plus the CPU/GPU it resolved to for `cpu` and `cuda`."""
    if target.name == "cpu":
        return f"cpu-{target.tvm['mcpu']}"
    if target.name == "cuda":
        return f"cuda-{target.tvm['arch']}"
    return target.name


class Store:
    def __init__(self, root: str | os.PathLike, target: Target):
        self.root = Path(root)
        self.dir = self.root / target_key(target)
        self.kernels_path = self.dir / "kernels.json"

    @contextmanager
    def staged(self):
        """A Store writing into a copy of this target's directory, moved into place when the block completes: a
        tune that fails (a board lost, Ctrl-C) leaves the database as it was, and no directory it created."""
        made = [d for d in (self.root, *self.root.parents) if not d.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{self.dir.name}.", suffix=".partial", dir=self.root))
        stage.chmod(0o755)  # as a plain mkdir would make it, not mkdtemp's 0700
        try:
            if self.dir.is_dir():
                shutil.copytree(self.dir, stage, dirs_exist_ok=True)
            staged = copy.copy(self)
            staged.dir, staged.kernels_path = stage, stage / self.kernels_path.name
            yield staged
            old = stage.with_suffix(".old")
            if self.dir.exists():
                os.rename(self.dir, old)
            os.rename(stage, self.dir)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            for d in made:  # innermost first
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
            raise

    def exists(self) -> bool:
        return self.kernels_path.is_file()

    def database(self):
        """MetaSchedule's JSONDatabase for this target (created on first use)."""
        from tvm.s_tir import meta_schedule as ms

        self.dir.mkdir(parents=True, exist_ok=True)
        return ms.database.JSONDatabase(path_workload=str(self.dir / "database_workload.json"),
                                        path_tuning_record=str(self.dir / "database_tuning_record.json"))

    def kernels(self) -> dict[str, dict]:
        """{workload key: {"task", "rules_s", "trials"}}; "trials" is set once the workload is tuned."""
        if not self.exists():
            return {}
        return json.loads(self.kernels_path.read_text())

    def keep_best_records(self) -> None:
        """Rewrite MetaSchedule's record file with each workload's fastest record only (all compile uses)."""
        path = self.dir / "database_tuning_record.json"
        best: dict[int, tuple[float, str]] = {}
        for line in path.read_text().splitlines():
            workload, record = json.loads(line)
            run_secs = record[1]
            if run_secs:
                seconds = sum(run_secs) / len(run_secs)
                if workload not in best or seconds < best[workload][0]:
                    best[workload] = (seconds, line)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for _, (_, line) in sorted(best.items())))
        os.replace(tmp, path)

    def save_kernels(self, kernels: dict[str, dict]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.kernels_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(kernels, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.kernels_path)


def workload_key(mod) -> str:
    """The database key of a task's IRModule (MetaSchedule's structural hash)."""
    import tvm_ffi

    return str(tvm_ffi.structural_hash(mod))


def mean_seconds(run_secs) -> float:
    secs = [float(s) for s in run_secs]
    return sum(secs) / len(secs)
