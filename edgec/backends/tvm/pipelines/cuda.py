"""The Relax pipeline for CUDA targets (TVM's `relax.backend.cuda` stages, edgec's legalization): NHWC
implicit-GEMM convolutions, optional fp16, tensor cores, CUDA graphs.

Starting point measured on an H100 (../shared/MEASUREMENTS.md): NHWC layout (`ConvertLayout` to NHWC/OHWI)
and fp16 compute (`ToMixedPrecision`) took ResNet-18 from
3.21 ms (fp32, NCHW) to 1.31 ms with TVM's stock CUDA pipeline, whose convs still fell to dlight's generic
fallback schedule. edgec legalizes ungrouped convs as implicit GEMMs instead (`rewrites.conv_gemm`), so
each conv with its bias/ReLU/residual epilogue is one matmul-shaped kernel: fp16 ones run on the tensor
cores (`schedules.cuda.conv_tensor_core`), fp32 ones get dlight's tiled Matmul schedule. Everything else is
scheduled by dlight's default GPU rules (Matmul, GEMV, Reduction, GeneralReduction, Fallback); with
`relax.backend.use_cuda_graph`, static-shape launches are captured into one CUDA graph.
"""

from __future__ import annotations

from edgec.backends.base import CompileOptions
from edgec.targets import Target

CUDA_GRAPH = {"relax.backend.use_cuda_graph": True}


def pipeline(target: Target, options: CompileOptions):
    import tvm
    from tvm import relax
    from tvm.relax.backend.cuda import pipeline as cuda

    from edgec.backends.tvm.rewrites.lift_clip import lift_clip
    from edgec.backends.tvm.rewrites.pairwise_variadic import pairwise_variadic

    tvm_target = tvm.target.Target(target.tvm)
    # Clip (ReLU6) kernels back to Relax ops first: ConvertLayout and ToMixedPrecision cannot see into the
    # importer's call_tir (ToMixedPrecision failed on MobileNetV2's ReLU6 with "Expected TensorType"); variadic
    # Sum/Max/Min/Mean as binary ops, whose layout ConvertLayout can follow
    prepare = [lift_clip, pairwise_variadic, relax.transform.DecomposeOpsForInference(),
               relax.transform.CanonicalizeBindings(),
               relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]})]
    if options.precision == "fp16":
        prepare.append(relax.transform.ToMixedPrecision(out_dtype="float16"))

    @tvm.transform.module_pass(opt_level=0, name="edgec.CudaPipeline")
    def pipeline(mod, ctx):
        config = dict(ctx.config, **CUDA_GRAPH)  # RewriteCUDAGraph reads it from the pass context
        with tvm_target, tvm.transform.PassContext(opt_level=ctx.opt_level, config=config):
            return tvm.transform.Sequential(prepare + cuda.library_dispatch_passes(tvm_target)
                                            + legalize_passes()
                                            + cuda.dataflow_lower_passes(tvm_target)
                                            + cuda.finalize_passes(tvm_target))(mod)

    return pipeline


def legalize_passes() -> list:
    """`relax.backend.cuda.legalize_passes` with convs as implicit GEMMs and edgec's tensor-core rule first."""
    from tvm import relax
    from tvm.s_tir import dlight as dl

    from edgec.backends.tvm.rewrites.conv_gemm import legalize_conv2d
    from edgec.backends.tvm.schedules.cuda.conv_tensor_core import ConvTensorCore

    return [relax.transform.LegalizeOps({"relax.nn.conv2d": legalize_conv2d}), relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR(),
            dl.ApplyDefaultSchedule(ConvTensorCore(), dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                    dl.gpu.GeneralReduction(), dl.gpu.Fallback())]
