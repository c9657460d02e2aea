"""Strict ONNX shape and type inference, so later passes and backends see every tensor's shape."""

import onnx

from edgec.passes.manager import PassContext


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    from edgec.frontend.loader import infer_shapes

    return infer_shapes(model, ctx.model_path)
