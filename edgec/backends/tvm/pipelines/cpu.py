"""The Relax pipeline for CPU (`llvm`) targets, stage by stage:
1. Relax rewrites that give the heavy ops GEMM shape: an int8 (QDQ) model's max pools run on the
   8-bit values (`rewrites.quantized_pool`), its conv/matmul lowered to
   u8 x s8 -> int32 ops with a requantize epilogue (`rewrites.integer_qdq`), Clip kernels
   lifted back to Relax ops (`rewrites.lift_clip`), variadic Sum/Max/Min/Mean built as chains of binary ops
   (`rewrites.pairwise_variadic`; the importer's stack-and-reduce defeats ConvertLayout), then conv2d converted
   to NHWC activations with HWIO weights (`ConvertLayout`): output channels become the unit-stride axis of
   both the output and the weights, so one output-channel vector is one contiguous weight load times one
   broadcast input.
   Weight transposes are constants and fold away in numpy (`fold_constant_moves`); elementwise ops
   and pooling follow the layout; zero-point pads follow it too (`rewrites.pad_layout`). 3x3 stride-1
   convs (fp32, or bf16 operands) become Winograd transforms around a batched GEMM (`rewrites.winograd`). Static
   dims the importer reads from a symbolic shape become constants (`rewrites.static_dims`). exp, erf, tanh,
   sigmoid and softmax become polynomial kernels LLVM vectorizes (`rewrites.fast_math`; libm's are scalar
   calls); last-axis softmax and LayerNorm reduce into vectors of running values (`rewrites.row_reductions`).
   fp16 (`--precision fp16`): Relax's ToMixedPrecision right after lift_clip, fp16 tensors with fp32
   accumulation in conv/matmul, graph I/O fp32; correct on any CPU, fast only where the CPU has fp16
   arithmetic (x86 without AVX512-FP16 converts each value, and runs it about 2x slower than fp32).
   bf16 (`--precision bf16`): conv2d/matmul with constant weights take bf16 operands, fp32 accumulation
   (`rewrites.bfloat16`), run as AVX512_BF16 dot products (`vdpbf16ps`) where the target has them;
   elsewhere TVM's legalization widens each bf16 value to fp32 (correct, not faster than fp32).
2. TVM's CPU legalization and fusion (LegalizeOps, FuseOps, FuseTIR): bias, folded BatchNorm,
   ReLU/Clip and residual adds end up in the conv/matmul kernel as epilogue blocks. Constant
   kernels are evaluated with one build for the whole model (`fold_constant_calls`), not Relax
   FoldConstant's one build per weight shape.
3. With a tuning database (`edgec tune`, `tuning/`), MetaSchedule's schedule for each kernel whose
   measured time beat the rules' (`edgec.backends.tvm.tuning.database.apply`).
   Then edgec's schedule rules (`schedules.cpu.cpu_rules`) on every other PrimFunc; a function no rule
   takes keeps TVM's default lowering, except that its parallel loops run serially where one launch does
   too little work (`schedules.cpu.small_parallel`: TVM's NMS forked once per kept box). The Gemm rule
   repacks constant weights into the panels its micro-kernel streams; SplitLayoutRewritePreproc turns
   each repack into its own call, which is folded into a new constant.
4. TVM's CPU dataflow lowering and finalization, as in `relax.backend.cpu_generic`.
"""

from __future__ import annotations

# conv2d_transpose is pinned to NCHW: ConvertLayout would otherwise carry NHWC into it, and TVM 0.27
# has no legalization for an NHWC conv2d_transpose (the FCN's upsampling failed at VM codegen).
CONV2D_LAYOUT = {"relax.nn.conv2d": ["NHWC", "HWIO"], "relax.nn.conv2d_transpose": ["NCHW", "IOHW"]}


def rewrite_passes(precision: str = "fp32", winograd: bool = True) -> list:
    """Step 1: Relax rewrites that give the heavy ops GEMM shape (and fp16 where asked; Winograd 3x3 convs unless
    `winograd` is False)."""
    from tvm import relax

    from edgec.backends.tvm.rewrites.bfloat16 import bfloat16_operands
    from edgec.backends.tvm.rewrites.fast_math import fast_math
    from edgec.backends.tvm.rewrites.fold_constant_moves import fold_constant_moves
    from edgec.backends.tvm.rewrites.integer_qdq import integer_qdq
    from edgec.backends.tvm.rewrites.lift_clip import lift_clip
    from edgec.backends.tvm.rewrites.pad_layout import pad_layout
    from edgec.backends.tvm.rewrites.pairwise_variadic import pairwise_variadic
    from edgec.backends.tvm.rewrites.quantized_pool import quantized_pool
    from edgec.backends.tvm.rewrites.row_reductions import row_reductions
    from edgec.backends.tvm.rewrites.static_dims import static_dims
    from edgec.backends.tvm.rewrites.winograd import winograd as winograd_convs

    passes = [quantized_pool, integer_qdq, lift_clip, pairwise_variadic]
    passes += [relax.transform.ToMixedPrecision(out_dtype="float32")] if precision == "fp16" else []
    passes += [bfloat16_operands] if precision == "bf16" else []
    passes += [relax.transform.ConvertLayout(CONV2D_LAYOUT), pad_layout, fold_constant_moves]
    return passes + ([winograd_convs] if winograd else []) + [static_dims, row_reductions, fast_math]


def library_dispatch_passes(tvm_target) -> list:
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    return cpu_generic.library_dispatch_passes(tvm_target)


def fusion_passes() -> list:
    """Step 2: TVM's legalization and fusion, constant kernels evaluated in one build."""
    from tvm import relax

    from edgec.backends.tvm.rewrites.fold_constant_calls import fold_constant_calls

    return [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
            fold_constant_calls,  # weight transposes from ConvertLayout, in one build
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(), relax.transform.FuseTIR(),
            relax.transform.AttachAttrLayoutFreeBuffers()]


def fused_passes(tvm_target, precision: str = "fp32", winograd: bool = True) -> list:
    """Steps 1-2 (rewrites, library dispatch, legalize + fuse): the kernels the rules (or a tuning
    database) schedule. Run them under `with tvm_target`."""
    return rewrite_passes(precision, winograd) + library_dispatch_passes(tvm_target) + fusion_passes()


def schedule_passes(tuned=None) -> list:
    """Step 3: tuned kernels first, then edgec's rules; weight repacks folded into constants."""
    from tvm import relax
    from tvm.s_tir import dlight

    from edgec.backends.tvm.rewrites.fold_constant_calls import fold_constant_calls
    from edgec.backends.tvm.schedules.cpu import cpu_rules
    from edgec.backends.tvm.schedules.cpu.small_parallel import serial_small_parallel

    passes = [tuned.apply_pass()] if tuned is not None else []  # before the rules, which skip them
    return passes + [dlight.ApplyDefaultSchedule(*cpu_rules()),
                     serial_small_parallel(),  # kernels no rule took: one core below the parallel threshold
                     relax.transform.SplitLayoutRewritePreproc(),  # weight repacks become their own calls
                     fold_constant_calls]  # ... evaluated now on the constant weights


def legalize_passes(tvm_target, tuned=None, precision: str = "fp32", winograd: bool = True) -> list:
    """Steps 1-3, TVM's `legalize_passes` stage for edgec's CPU pipeline."""
    return fused_passes(tvm_target, precision, winograd) + schedule_passes(tuned)


def pipeline(tvm_target, tuned=None, precision: str = "fp32", winograd: bool = True):
    """edgec's CPU pipeline as one module pass (rewrites, legalize + fuse, tuned kernels, schedule rules,
    lowering)."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    @tvm.transform.module_pass(opt_level=0, name="edgec.CpuPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with tvm_target:
            passes = legalize_passes(tvm_target, tuned, precision, winograd)
            passes += cpu_generic.dataflow_lower_passes(tvm_target)
            passes += cpu_generic.finalize_passes(tvm_target)
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline
