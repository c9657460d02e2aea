"""Lower each inference BatchNormalization that fuse_batchnorm could not fold into Mul and Add.

BN(x) = x * s + t (edgec/passes/_batchnorm.py), with s and t shaped [C, 1, ..., 1] to broadcast over
axis 1 of a rank-r x; a Mul by all-ones or an Add of all-zeros is left out. Needs x's rank; a BN with
training outputs, non-constant parameters or unknown rank stays, with a note.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common

from edgec.passes._batchnorm import inference_affine
from edgec.passes._ir_util import Namer, add_initializer, ir_pass
from edgec.passes.base import PassContext, register


def _lower(graph: ir.Graph, bn: ir.Node, namer: Namer) -> bool:
    affine, x = inference_affine(bn), bn.inputs[0]
    if affine is None or x.shape is None or x.dtype is None or len(x.shape) < 2:
        return False
    dtype = x.dtype.numpy()
    broadcast = (len(affine[0]),) + (1,) * (len(x.shape) - 2)
    s, t = (a.reshape(broadcast).astype(dtype) for a in affine)
    base = bn.name or bn.outputs[0].name
    nodes, out = [], x
    if not np.all(s == 1):
        nodes.append(ir.Node("", "Mul", [out, add_initializer(graph, namer, f"{base}_scale", s)], name=f"{base}_mul"))
        out = nodes[-1].outputs[0]
    if not np.all(t == 0) or not nodes:
        nodes.append(ir.Node("", "Add", [out, add_initializer(graph, namer, f"{base}_shift", t)], name=f"{base}_add"))
    ir.convenience.replace_nodes_and_values(graph, bn, [bn], nodes, [bn.outputs[0]], [nodes[-1].outputs[0]])
    return True


@register("batchnorm_to_affine")
@ir_pass
def run(ir_model: ir.Model, ctx: PassContext) -> bool:
    graph = ir_model.graph
    namer = Namer(graph)
    lowered = False
    for node in list(graph):
        if node.op_type != "BatchNormalization":
            continue
        if _lower(graph, node, namer):
            lowered = True
        else:
            ctx.notes.append(f"kept BatchNormalization '{node.name}': training outputs, non-constant parameters "
                             "or unknown input rank")
    swept = common.RemoveUnusedNodesPass()(ir_model).modified
    return common.NameFixPass()(ir_model).modified or lowered or swept
