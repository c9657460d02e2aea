"""Common-subexpression elimination: nodes with the same op, attributes and inputs compute the same value.

Uses onnx-ir's CommonSubexpressionEliminationPass: the second of two such nodes is removed and its users
read the first's outputs. Random ops (RandomNormal, RandomUniform and their -Like forms) are never merged.
"""

import onnx_ir as ir
import onnx_ir.passes.common as common

from edgec.passes._ir_util import ir_pass
from edgec.passes.base import PassContext, register


@register("eliminate_common_subexpressions")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    return common.CommonSubexpressionEliminationPass()(ir_model).modified
