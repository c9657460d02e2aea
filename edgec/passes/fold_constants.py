"""Constant folding: evaluate every node whose inputs are all constant and store the result as a weight.

Delegates to onnxscript's FoldConstantsPass (ONNX reference evaluator, plus its partial rules: Shape of a
static tensor, Reshape to the same shape / Dropout in inference -> Identity, Concat of one input, ...),
then removes the nodes nothing depends on and lifts the remaining Constant nodes into initializers.
Size limits (elements) are ctx.options "fold_input_limit" / "fold_output_limit".

Two departures from onnxscript's defaults, both for TVM's importer, which takes pads, shapes and
ConstantOfShape's shape only as constants: ONNX shape inference runs on each node as it is folded (a Shape
whose input only becomes static after an earlier fold in the same sweep folds too: the TorchScript
exporter's Shape -> Gather -> Concat -> Reshape chains), and a ConstantOfShape with a constant shape is
folded within the output limit (onnxscript keeps them to keep files small; the TorchScript exporter builds
Pad's pads and transformers' attention-mask seeds from them).
"""

import math

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.optimizer import fold_constants_ir

from edgec.passes._ir_util import ir_pass
from edgec.passes.base import PassContext, register

FOLD_LIMIT = 1 << 22  # 4M elements: folds weight transposes/reshapes of any edge-sized model


def _fold_constant_of_shape(output_limit: int):
    def should_fold(node: ir.Node) -> bool | None:
        """True for a ConstantOfShape with a constant shape of at most output_limit elements; None (onnxscript's
        own rules) for every other node."""
        if node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx") or not node.inputs:
            return None
        shape = node.inputs[0].const_value if node.inputs[0] is not None else None
        return None if shape is None else math.prod(int(d) for d in shape.numpy().reshape(-1)) <= output_limit

    return should_fold


@register("fold_constants")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    output_limit = ctx.options.get("fold_output_limit", FOLD_LIMIT)
    folded = fold_constants_ir(ir_model, onnx_shape_inference=True,
                               input_size_limit=ctx.options.get("fold_input_limit", FOLD_LIMIT),
                               output_size_limit=output_limit,
                               should_fold=_fold_constant_of_shape(output_limit)).modified
    return ir.passes.Sequential(
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
    )(ir_model).modified or folded
