"""The Relax pipeline for CUDA targets: NHWC convolutions, optional fp16, dlight GPU schedules, CUDA graphs.

Recipe measured on an H100 (../shared/MEASUREMENTS.md): NHWC layout (`ConvertLayout` to NHWC/OHWI) and
fp16 compute (`ToMixedPrecision`, fp32 accumulation kept by TVM for matmul/conv) took ResNet-18 from
3.21 ms (fp32, NCHW) to 1.31 ms; TVM's CUDA pipeline then legalizes, fuses, schedules every kernel with
dlight's default GPU rules (Matmul, GEMV, Reduction, GeneralReduction, Fallback) and, with
`relax.backend.use_cuda_graph`, captures static-shape launches into one CUDA graph.
"""

from __future__ import annotations

from edgec.backends.base import CompileOptions
from edgec.targets import Target

CUDA_GRAPH = {"relax.backend.use_cuda_graph": True}


def relax_pipeline(target: Target, options: CompileOptions):
    import tvm
    from tvm import relax
    from tvm.relax.backend.cuda import pipeline as cuda

    tvm_target = tvm.target.Target(target.tvm)
    prepare = [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
               relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]})]
    if options.precision == "fp16":
        prepare.append(relax.transform.ToMixedPrecision(out_dtype="float16"))

    @tvm.transform.module_pass(opt_level=0, name="edgec.CudaPipeline")
    def pipeline(mod, ctx):
        config = dict(ctx.config, **CUDA_GRAPH)  # RewriteCUDAGraph reads it from the pass context
        with tvm_target, tvm.transform.PassContext(opt_level=ctx.opt_level, config=config):
            return tvm.transform.Sequential(prepare + cuda.library_dispatch_passes(tvm_target)
                                            + cuda.legalize_passes(tvm_target)
                                            + cuda.dataflow_lower_passes(tvm_target)
                                            + cuda.finalize_passes(tvm_target))(mod)

    return pipeline
