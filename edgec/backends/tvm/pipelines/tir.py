"""The TIR pipeline edgec lowers CPU kernels with: TVM's (`s_tir`), small buffers kept on the stack.

TVM's LowerTVMBuiltin turns every buffer of 1 KiB or more (`kMaxStackAlloca`) into a pair of
TVMBackendAllocWorkspace/FreeWorkspace calls where it is allocated. A register tile's accumulators are such a
buffer, allocated inside the parallel tile loop: on AVX-512, where a 16-accumulator tile is exactly 1 KiB,
every tile made both calls, zeroed the buffer and stored its accumulators into it before freeing it
(MobileNetV2's 1x1 expansion over 16 channels at batch 8: 3x slower). Buffers of constant size up to
STACK_BYTES stay stack allocations (`disable_lower_builtin`), which LLVM keeps in registers.
"""

from __future__ import annotations

NAME = "edgec_cpu"  # the name `tvm.compile(..., tir_pipeline=...)` takes, registered by `tir_pipeline`
STACK_BYTES = 8 * 1024  # 4x the largest register tile (32 512-bit accumulators); the thread stacks are MiBs


def tir_pipeline(kind: str) -> str:
    """What `tvm.compile(..., tir_pipeline=...)` takes for a TVM target kind: edgec's for `llvm`, TVM's default
    for the rest (CUDA kernels keep their accumulators in `local` registers already)."""
    if kind != "llvm":
        return "default"
    from tvm.tirx import compilation_pipeline

    compilation_pipeline.PIPELINE_MAP.setdefault(NAME, _cpu_pipeline)
    return NAME


def _cpu_pipeline():
    import tvm
    from tvm.s_tir.pipeline import default_s_tir_pipeline

    lower, finalize_host, finalize_device = default_s_tir_pipeline()
    return lower, lambda: tvm.transform.Sequential([stack_small_buffers(), finalize_host()]), finalize_device


def stack_small_buffers():
    """A PrimFunc pass: mark global buffers of constant size up to STACK_BYTES `disable_lower_builtin`, so
    LowerTVMBuiltin leaves them stack allocations."""
    import tvm_ffi
    from tvm import tirx

    marker = tirx.IntImm("int32", 1)

    def mark(alloc):
        buffer = alloc.buffer
        if buffer.scope() != "global" or "disable_lower_builtin" in alloc.annotations:
            return alloc
        elements = 1
        for extent in buffer.shape:
            if not isinstance(extent, tirx.IntImm):
                return alloc
            elements *= int(extent)
        if elements * buffer.dtype.bits * buffer.dtype.lanes // 8 > STACK_BYTES:
            return alloc
        return tirx.AllocBuffer(buffer, {**alloc.annotations, "disable_lower_builtin": marker})

    @tirx.transform.prim_func_pass(opt_level=0, name="edgec.StackSmallBuffers")
    def _pass(func, _mod, _ctx):
        return tvm_ffi.structural_map(func, (tirx.AllocBuffer, mark))

    return _pass
