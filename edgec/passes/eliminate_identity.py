"""Identity and inference-mode Dropout elimination.

Dropout(x) = x when it is not training: is_test set (opset < 7), opset 7-11 (no training flag),
training_mode absent or constant False, or ratio constant 0; its mask output must be unused.
Identity(x) = x: users of y read x instead (onnx-ir's IdentityEliminationPass; an Identity from a graph
input straight to a graph output stays).
A training-mode Dropout with ratio > 0 is random, so it stays.
"""

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common

from edgec.passes._ir_util import constant, ir_pass
from edgec.passes.base import PassContext, register


def is_inference_dropout(node: ir.Node, opset: int) -> bool:
    if node.op_type != "Dropout" or node.domain != "":
        return False
    if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
        return False
    if opset < 7:
        return bool(node.attributes.get_int("is_test", 0))
    if opset < 12:
        return True
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is None:
        return True
    flag = constant(training)
    if flag is not None and not bool(np.asarray(flag).item()):
        return True
    ratio = constant(node.inputs[1]) if len(node.inputs) > 1 else None
    return ratio is not None and ratio.size == 1 and float(ratio.item()) == 0.0


@register("eliminate_identity")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    opset = ir_model.opset_imports.get("", 1)
    dropouts = False
    for node in ir_model.graph:
        if is_inference_dropout(node, opset):
            node.op_type, node.version = "Identity", None
            node.attributes.clear()
            node.resize_inputs(1)
            node.resize_outputs(1)
            dropouts = True
    identities = common.IdentityEliminationPass()(ir_model).modified
    return common.RemoveUnusedNodesPass()(ir_model).modified or identities or dropouts
