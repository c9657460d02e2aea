"""MetaSchedule's builder and runner for `edgec tune`: builds in this process, measures in one worker.

Building in-process saves a worker pool per batch (TVM's LocalBuilder restarts its pool on every
batch, and each worker spends seconds importing TVM). Measuring stays in a separate process, so a
candidate that crashes cannot take `edgec tune` down. That worker imports TVM without torch:
tvm_ffi imports torch when it can (about 4 s), so the worker's PYTHONPATH starts with a `torch`
package that raises ImportError, which tvm_ffi treats as "no torch".
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

_NO_TORCH = 'raise ImportError("edgec tuning workers run without torch")\n'


@contextmanager
def workers_without_torch():
    """While active, Python subprocesses started from here cannot import torch (and TVM skips it)."""
    previous = os.environ.get("PYTHONPATH")
    with tempfile.TemporaryDirectory(prefix="edgec-notorch-") as shim:
        os.mkdir(os.path.join(shim, "torch"))
        with open(os.path.join(shim, "torch", "__init__.py"), "w", encoding="ascii") as f:
            f.write(_NO_TORCH)
        os.environ["PYTHONPATH"] = os.pathsep.join([shim, previous] if previous else [shim])
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = previous


def in_process_builder(export=None):
    """A MetaSchedule builder that compiles candidates here, one after another; `export(module) -> path` writes
    each (default: MetaSchedule's .tar of objects, which the runner links when it loads it)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_export

    export = export or default_export

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs):
            results = []
            for item in build_inputs:
                try:
                    results.append(BuilderResult(export(build(item.mod, item.target)), None))
                except Exception as e:  # a candidate TVM cannot build is a failed trial, not a failed tune
                    results.append(BuilderResult(None, f"{type(e).__name__}: {str(e).strip()[-300:]}"))
            return results

    return InProcessBuilder()


def build(mod, target):
    """MetaSchedule's default build without its `import tvm.s_tir.tensor_intrin` (minutes on a busy host;
    the CPU search space here uses no tensor intrinsics): weight repacks removed, so only the kernel is timed,
    lowered as artifacts lower it (`pipelines.tir`)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    from edgec.backends.tvm.pipelines.tir import tir_pipeline

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target,
                     pipeline=tir_pipeline(target.kind.name))


def local_runner(timeout_s: float = 60):
    """MetaSchedule's LocalRunner (one worker process), timing each candidate over >= 50 ms."""
    from tvm.s_tir import meta_schedule as ms

    config = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=50, enable_cpu_cache_flush=False)
    return ms.runner.LocalRunner(timeout_sec=timeout_s, evaluator_config=config)
