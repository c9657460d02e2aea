"""Numeric validation of passes: run the model with ONNX Runtime before and after each pass, same inputs.

Inputs are ctx.options["validation_inputs"] where given, else deterministic random values (standard
normal floats, zero integers and booleans), run twice when the model has symbolic or unknown dims:
with every such dim 1 and with every such dim 3, so a pass that bakes one value into the graph (a
Reshape to batch 1) is caught. A size the input model itself cannot run at is left out, with a note.
The reference outputs are those of the previous model in the pipeline, so each pass costs one ORT run
per size, and a breach of max|after - before| <= atol + rtol * max|before| (edgec.metrics.compare's
Elementwise relative to the max) is blamed on the pass.
"""

from __future__ import annotations

import onnx

from edgec.errors import EdgecError, InternalError
from edgec.frontend.loader import input_specs
from edgec.frontend.reference import Reference
from edgec.metrics.compare import Elementwise
from edgec.runtime.inputs import random_inputs

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
SYMBOLIC_DIM_VALUES = (1, 3)  # what every symbolic dim is set to, one validation run each


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def has_symbolic_dims(model: onnx.ModelProto) -> bool:
    from edgec.frontend.loader import graph_inputs

    return any(not d.HasField("dim_value") for v in graph_inputs(model) for d in v.type.tensor_type.shape.dim)


class Checker:
    """Holds the input sets and the latest reference outputs of each; `check` validates one pass's result."""

    def __init__(self, model: onnx.ModelProto, ctx) -> None:
        self.path = ctx.model_path
        self.rule = Elementwise(float(ctx.options.get("atol", DEFAULT_ATOL)),
                                float(ctx.options.get("rtol", DEFAULT_RTOL)), relative_to="max")
        given = ctx.options.get("validation_inputs")
        if given:
            runs = {"the given inputs": given}
        elif has_symbolic_dims(model):
            runs = {f"symbolic dims = {v}": random_inputs(input_specs(model), symbolic=v) for v in SYMBOLIC_DIM_VALUES}
        else:
            runs = {"random inputs": random_inputs(input_specs(model))}
        self.feeds, self.reference = {}, {}
        for index, (label, feeds) in enumerate(runs.items()):
            try:
                reference = Reference(model).run(feeds)  # a session per set: one may fail to build
            except Exception as e:  # ORT raises its own exception types (Fail, InvalidArgument, ...)
                if index > 0:  # e.g. a symbolic dim the model only accepts at 1
                    ctx.notes.append(f"validated without {label}: the input model does not run so ({_first_line(e)})")
                    continue
                raise EdgecError(f"{self.path}: cannot validate passes: ONNX Runtime cannot run the input model "
                                 f"({_first_line(e)}); fix the model, give inputs that fit it, or use "
                                 "--no-validate") from None
            self.feeds[label], self.reference[label] = feeds, reference

    def check(self, model: onnx.ModelProto, pass_name: str) -> float:
        """Max abs error of this model's outputs vs the previous model's, over every input set; raises on a
        breach naming the pass, the output and the input set."""
        try:
            session = Reference(model)
        except Exception as e:
            raise InternalError(f"{self.path}: pass '{pass_name}' produced a model ONNX Runtime cannot run "
                                f"({_first_line(e)}); rerun without it (--passes) or with --no-validate") from None
        return max(self._check(session, pass_name, label, feeds) for label, feeds in self.feeds.items())

    def _check(self, session: Reference, pass_name: str, label: str, feeds: dict) -> float:
        where = f" with {label}" if len(self.feeds) > 1 else ""
        try:
            outputs = session.run(feeds)
        except Exception as e:
            raise InternalError(f"{self.path}: pass '{pass_name}' produced a model ONNX Runtime cannot run{where} "
                                f"({_first_line(e)}); rerun without it (--passes) or with --no-validate") from None
        worst = 0.0
        for name, before in self.reference[label].items():
            if name not in outputs:
                raise InternalError(f"{self.path}: pass '{pass_name}' lost graph output '{name}'; rerun "
                                    "without it (--passes)")
            after = outputs[name]
            if after.shape != before.shape or after.dtype != before.dtype:
                raise InternalError(f"{self.path}: pass '{pass_name}' changed output '{name}' from "
                                    f"{before.dtype}{list(before.shape)} to {after.dtype}{list(after.shape)}{where}; "
                                    "rerun without it (--passes)")
            result = self.rule(after, before)
            if not result:
                bound = result.bound if result.bound is not None else self.rule.atol
                raise InternalError(f"{self.path}: pass '{pass_name}' changed output '{name}' by max abs error "
                                    f"{result.max_abs_err:.3g} > tolerance {bound:.3g} ({self.rule.describe()})"
                                    f"{where}; rerun without it (--passes) or with --no-validate")
            worst = max(worst, result.max_abs_err)
        self.reference[label] = outputs
        return worst
