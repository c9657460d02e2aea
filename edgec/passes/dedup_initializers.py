"""Duplicate weight de-duplication: initializers with equal dtype, shape and bytes become one.

Uses onnx-ir's DeduplicateHashedInitializersPass (SHA-512 of the data, confirmed byte for byte); users of
each duplicate read the first copy. Graph inputs and outputs are never merged. Tensors that constant
folding left as strided numpy views are made contiguous first (hashing needs contiguous bytes).
"""

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common

from edgec.passes._ir_util import ir_pass
from edgec.passes.base import PassContext, register


@register("dedup_initializers")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    for value in ir_model.graph.initializers.values():
        tensor = value.const_value
        if isinstance(tensor, ir.Tensor) and isinstance(tensor.raw, np.ndarray) and not tensor.raw.flags.c_contiguous:
            value.const_value = ir.tensor(np.ascontiguousarray(tensor.raw), name=value.name)
    return common.DeduplicateHashedInitializersPass()(ir_model).modified
