"""Opset normalisation: convert the default ONNX domain to one opset with onnx's version converter.

Target: ctx.opset when given (a failure is an error), else the model's own opset raised to MIN_OPSET, the
oldest whose op signatures (Squeeze/Unsqueeze axes and Dropout's training_mode as inputs, ...) the other
passes and backends expect; an upgrade that the converter cannot do is then skipped with a note.
"""

import onnx
import onnx.version_converter

from edgec.errors import EdgecError
from edgec.passes.base import PassContext, register

MIN_OPSET = 13


def model_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


@register("normalize_opset")
def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    current = model_opset(model)
    target = ctx.opset or max(current, MIN_OPSET)
    if target == current:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as e:
        reason = " ".join(str(e).split())[:300]
        if ctx.opset is None:
            ctx.notes.append(f"kept opset {current}: the version converter cannot reach {target} ({reason})")
            return model
        raise EdgecError(f"{ctx.model_path}: pass 'normalize_opset' cannot convert the model from opset {current} "
                         f"to {target} ({reason}); pick another --opset or re-export at {target}") from None
    return converted
