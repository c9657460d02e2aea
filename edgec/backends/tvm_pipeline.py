"""The Relax compilation pipeline the TVM backend uses for a target.

CPU (`llvm` targets), in order:
1. Relax rewrites that give the heavy ops GEMM shape: an int8 (QDQ) model's max pools run on the
   8-bit values (`tvm_rewrites.quantized_pool`), its conv/matmul lowered to
   u8 x s8 -> int32 ops with a requantize epilogue (`tvm_rewrites.integer_qdq`), Clip kernels
   lifted back to Relax ops (`tvm_rewrites.lift_clip`), then conv2d converted to NHWC activations with HWIO weights
   (`ConvertLayout`): output channels become the unit-stride axis of both the output and the
   weights, so one output-channel vector is one contiguous weight load times one broadcast input.
   Weight transposes are constants and fold away in numpy (`fold_constant_moves`); elementwise ops
   and pooling follow the layout; zero-point pads follow it too (`tvm_rewrites.pad_layout`).
   fp16 (`--precision fp16`): Relax's ToMixedPrecision right after lift_clip, fp16 tensors with fp32
   accumulation in conv/matmul, graph I/O fp32; correct on any CPU, fast only where the CPU has fp16
   arithmetic (x86 without AVX512-FP16 converts each value, and runs it about 2x slower than fp32).
2. TVM's CPU legalization and fusion (LegalizeOps, FuseOps, FuseTIR): bias, folded BatchNorm,
   ReLU/Clip and residual adds end up in the conv/matmul kernel as epilogue blocks. Constant
   kernels are evaluated with one build for the whole model (`fold_constant_calls`), not Relax
   FoldConstant's one build per weight shape.
3. With a tuning database (`edgec tune`, edgec/tune/), MetaSchedule's schedule for each kernel whose
   measured time beat the rules' (`edgec.tune.apply`).
   Then edgec's schedule rules (`tvm_schedules.cpu_rules`) on every other PrimFunc; a function no rule
   takes keeps TVM's default lowering. The Gemm rule repacks constant weights into the panels
   its micro-kernel streams; SplitLayoutRewritePreproc turns each repack into its own call, which
   is folded into a new constant.
4. TVM's CPU dataflow lowering and finalization, as in `relax.backend.cpu_generic`.
Other targets use TVM's default pipeline.
"""

from __future__ import annotations

from edgec.backends.base import CompileOptions
from edgec.targets import Target

# conv2d_transpose is pinned to NCHW: ConvertLayout would otherwise carry NHWC into it, and TVM 0.27
# has no legalization for an NHWC conv2d_transpose (the FCN's upsampling failed at VM codegen).
CONV2D_LAYOUT = {"relax.nn.conv2d": ["NHWC", "HWIO"], "relax.nn.conv2d_transpose": ["NCHW", "IOHW"]}


def relax_pipeline(target: Target, options: CompileOptions, tuned=None):
    """What `tvm.compile(..., relax_pipeline=...)` takes for `target`; `tuned` (edgec.tune.apply.TunedKernels)
    schedules the kernels a tuning database has better schedules for, before the rules."""
    import tvm

    from edgec.backends.tvm_determinism import canonical_shape_funcs

    tvm_target = tvm.target.Target(target.tvm)
    if tvm_target.kind.name == "cuda":
        from edgec.backends import tvm_cuda

        return tvm.transform.Sequential([tvm_cuda.relax_pipeline(target, options), canonical_shape_funcs()])
    return tvm.transform.Sequential([cpu_pipeline(tvm_target, tuned, options.precision), canonical_shape_funcs()])


def cpu_fused_passes(tvm_target, precision: str = "fp32") -> list:
    """Steps 1-2 of the CPU pipeline (rewrites, legalize + fuse): the kernels the rules (or a tuning
    database) schedule. Run them under `with tvm_target`."""
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    from edgec.backends.tvm_rewrites.fold_constant_calls import fold_constant_calls
    from edgec.backends.tvm_rewrites.fold_constant_moves import fold_constant_moves
    from edgec.backends.tvm_rewrites.integer_qdq import integer_qdq
    from edgec.backends.tvm_rewrites.lift_clip import lift_clip
    from edgec.backends.tvm_rewrites.pad_layout import pad_layout
    from edgec.backends.tvm_rewrites.quantized_pool import quantized_pool

    passes = [quantized_pool, integer_qdq, lift_clip]
    passes += [relax.transform.ToMixedPrecision(out_dtype="float32")] if precision == "fp16" else []
    passes += [relax.transform.ConvertLayout(CONV2D_LAYOUT), pad_layout, fold_constant_moves]
    passes += cpu_generic.library_dispatch_passes(tvm_target)
    passes += [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
               fold_constant_calls,  # weight transposes from ConvertLayout, in one build
               relax.transform.FoldConstant(),
               relax.transform.FuseOps(), relax.transform.FuseTIR(),
               relax.transform.AttachAttrLayoutFreeBuffers()]
    return passes


def cpu_pipeline(tvm_target, tuned=None, precision: str = "fp32"):
    """edgec's CPU pipeline as one module pass (rewrites, legalize + fuse, tuned kernels, schedule rules,
    lowering)."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
    from tvm.s_tir import dlight

    from edgec.backends.tvm_rewrites.fold_constant_calls import fold_constant_calls
    from edgec.backends.tvm_schedules import cpu_rules

    @tvm.transform.module_pass(opt_level=0, name="edgec.CpuPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with tvm_target:
            passes = cpu_fused_passes(tvm_target, precision)
            passes += [tuned.apply_pass()] if tuned is not None else []  # before the rules, which skip them
            passes += [dlight.ApplyDefaultSchedule(*cpu_rules()),
                       relax.transform.SplitLayoutRewritePreproc(),  # weight repacks become their own calls
                       fold_constant_calls]  # ... evaluated now on the constant weights
            passes += cpu_generic.dataflow_lower_passes(tvm_target)
            passes += cpu_generic.finalize_passes(tvm_target)
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline
