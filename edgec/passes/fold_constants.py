"""Constant folding: evaluate every node whose inputs are all constant and store the result as a weight.

Delegates to onnxscript's FoldConstantsPass (ONNX reference evaluator, plus its partial rules: Shape of a
static tensor, Reshape to the same shape / Dropout in inference -> Identity, Concat of one input, ...),
then removes the nodes nothing depends on and lifts the remaining Constant nodes into initializers.
Size limits (elements) are ctx.options "fold_input_limit" / "fold_output_limit".
"""

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.optimizer import fold_constants_ir

from edgec.passes._ir_util import ir_pass
from edgec.passes.base import PassContext, register

FOLD_LIMIT = 1 << 22  # 4M elements: folds weight transposes/reshapes of any edge-sized model


@register("fold_constants")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    folded = fold_constants_ir(ir_model, onnx_shape_inference=False,
                               input_size_limit=ctx.options.get("fold_input_limit", FOLD_LIMIT),
                               output_size_limit=ctx.options.get("fold_output_limit", FOLD_LIMIT)).modified
    return ir.passes.Sequential(
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
    )(ir_model).modified or folded
