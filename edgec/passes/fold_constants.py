"""Constant folding and onnxscript's default cleanup rewrites (no-op removal, dead code).

Delegates to `onnxscript.optimizer.optimize`, which folds subgraphs whose inputs are all constant
(evaluating them with the ONNX reference implementation) and removes what no output depends on.
"""

import onnx
import onnxscript.optimizer

from edgec.passes.manager import PassContext


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    return onnxscript.optimizer.optimize(model)
