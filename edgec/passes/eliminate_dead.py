"""Dead-code elimination: drop nodes no graph output depends on, then unused initializers, functions, opsets.

Uses onnx-ir's RemoveUnusedNodesPass (which also removes initializers that nothing reads and that are not
graph inputs), RemoveUnusedFunctionsPass and RemoveUnusedOpsetsPass.
"""

import onnx_ir as ir
import onnx_ir.passes.common as common

from edgec.passes._ir_util import ir_pass
from edgec.passes.base import PassContext, register


@register("eliminate_dead")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    return ir.passes.Sequential(common.RemoveUnusedNodesPass(), common.RemoveUnusedFunctionsPass(),
                                common.RemoveUnusedOpsetsPass())(ir_model).modified
