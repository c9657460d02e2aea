"""The Relax pipeline for a target, as TVM names its stages (`relax/backend/<target>/pipeline.py`).

Each module builds the same four stages for its target kind: library_dispatch_passes (BYOC
offloads: none for edgec), legalize_passes (edgec's rewrites, LegalizeOps, fusion and the schedule
rules), dataflow_lower_passes and finalize_passes (TVM's). `relax_pipeline` dispatches by the TVM
target's kind and appends the canonical shape-function order that keeps artifacts byte-identical;
`tir_pipeline` names the TIR lowering that follows (`tir.py`: TVM's, with small buffers on the stack on CPUs).
"""

from __future__ import annotations

from edgec.backends.base import CompileOptions
from edgec.targets import Target


def relax_pipeline(target: Target, options: CompileOptions, tuned=None):
    """What `tvm.compile(..., relax_pipeline=...)` takes for `target`; `tuned`
    (edgec.backends.tvm.tuning.database.apply.TunedKernels) schedules, on CPUs, the kernels a tuning
    database has better schedules for, before the rules."""
    import tvm

    from edgec.backends.tvm.determinism import canonical_shape_funcs
    from edgec.backends.tvm.pipelines import cpu, cuda

    kind = tvm.target.Target(target.tvm).kind.name
    if kind == "cuda":
        stages = cuda.pipeline(target, options)
    elif kind == "llvm":
        stages = cpu.pipeline(tvm.target.Target(target.tvm), tuned, options.precision, options.winograd)
    else:
        raise ValueError(f"target '{target.name}': no edgec pipeline for TVM target kind '{kind}'")
    return tvm.transform.Sequential([stages, canonical_shape_funcs(), _notify(options, "build")])


def tir_pipeline(target: Target) -> str:
    """What `tvm.compile(..., tir_pipeline=...)` takes for `target`: edgec's on CPUs (`pipelines.tir`)."""
    import tvm

    from edgec.backends.tvm.pipelines import tir

    return tir.tir_pipeline(tvm.target.Target(target.tvm).kind.name)


def _notify(options: CompileOptions, stage: str):
    """A pass that changes nothing and tells `options.progress` that `stage` starts (here: code generation)."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name=f"edgec.Stage.{stage}")
    def _pass(mod, _ctx):
        options.stage(stage)
        return mod

    return _pass
