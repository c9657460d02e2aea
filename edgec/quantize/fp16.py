"""fp32 -> fp16 conversion that keeps graph I/O and numerically sensitive ops in fp32.

Built on onnxruntime.transformers.float16 (the converter ORT's own tools use): it casts initializers
and activations to float16 and inserts Cast nodes around the ops in `KEEP_FP32`, whose fp16 versions
lose too much (Softmax/LayerNormalization overflow their sums, reductions accumulate error).
"""

from __future__ import annotations

import onnx

KEEP_FP32 = ("Softmax", "LogSoftmax", "LayerNormalization", "BatchNormalization", "ReduceMean", "ReduceSum",
             "ReduceL2", "ReduceLogSumExp", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
             "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "NonMaxSuppression", "TopK", "Resize", "Range")


def to_fp16(model: onnx.ModelProto, keep_io_types: bool = True, keep_fp32=KEEP_FP32) -> onnx.ModelProto:
    """A float16 copy of `model`; inputs/outputs stay float32 unless keep_io_types is False."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(keep_fp32))
    converted = convert_float_to_float16(onnx.ModelProto.FromString(model.SerializeToString()),
                                         keep_io_types=keep_io_types, op_block_list=block)
    # The converter appends its Cast nodes at the end and leaves stale float32 value_info: sort, re-infer.
    import onnx_ir as ir
    from onnx_ir.passes.common import TopologicalSortPass

    del converted.graph.value_info[:]
    graph = ir.from_proto(converted)
    TopologicalSortPass()(graph)
    return onnx.shape_inference.infer_shapes(ir.to_proto(graph))
