"""Strict ONNX shape and type inference (with data propagation), so later passes and backends see shapes.

Intermediate shapes that are not fully static are dropped first: a stale or weaker annotation (say
[unk, unk, unk] written by an earlier tool) would otherwise be kept over what data propagation can now
derive (say [batch, 7, 64] from a Shape -> Slice -> Concat chain).
"""

import onnx

from edgec.passes.base import PassContext, register


def _static(value: onnx.ValueInfoProto) -> bool:
    shape = value.type.tensor_type.shape
    return value.type.HasField("tensor_type") and shape.dim and all(d.HasField("dim_value") for d in shape.dim)


@register("infer_shapes")
def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    from edgec.frontend.loader import infer_shapes

    model = onnx.ModelProto.FromString(model.SerializeToString())
    kept = [v for v in model.graph.value_info if _static(v)]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    return infer_shapes(model, ctx.model_path)
