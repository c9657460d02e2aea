"""Numeric validation of passes: run the model with ONNX Runtime before and after each pass, same inputs.

Inputs are ctx.options["validation_inputs"] where given, else deterministic random values (standard
normal floats, zero integers and booleans), run twice when the model has symbolic or unknown dims:
with every such dim 1 and with every such dim 3, so a pass that bakes one value into the graph (a
Reshape to batch 1) is caught. A size the input model itself cannot run at is left out, with a note.
The reference outputs are those of the previous model in the pipeline, so each pass costs one ORT run
per size, and a breach of max|after - before| <= atol + rtol * max|before| is blamed on the pass.
"""

from __future__ import annotations

import numpy as np
import onnx

from edgec.errors import EdgecError, InternalError

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
SYMBOLIC_DIM_VALUES = (1, 3)  # what every symbolic dim is set to, one validation run each


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def has_symbolic_dims(model: onnx.ModelProto) -> bool:
    from edgec.frontend.loader import graph_inputs

    return any(not d.HasField("dim_value") for v in graph_inputs(model) for d in v.type.tensor_type.shape.dim)


def random_inputs(model: onnx.ModelProto, seed: int = 0, symbolic: int = 1) -> dict[str, np.ndarray]:
    """One deterministic array per real graph input; symbolic and unknown dims take `symbolic`."""
    from edgec.frontend.loader import graph_inputs

    rng = np.random.default_rng(seed)
    feeds = {}
    for value in graph_inputs(model):
        tensor_type = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else symbolic for d in tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[value.name] = np.zeros(shape, dtype)
    return feeds


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run exactly this graph (ORT's own graph rewrites off) on the CPU; outputs by name."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # fatal only: failures reach the user as one edgec error line
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    return dict(zip(names, session.run(names, {k: v for k, v in feeds.items() if k in wanted})))


def max_abs_error(before: np.ndarray, after: np.ndarray) -> float:
    """Largest |after - before|, with NaN in the same place in both counted as equal."""
    if before.size == 0:
        return 0.0
    if before.dtype.kind not in "biuf":
        return 0.0 if np.array_equal(before, after) else float("inf")
    both_nan = np.isnan(before) & np.isnan(after) if before.dtype.kind == "f" else False
    diff = np.abs(after.astype(np.float64) - before.astype(np.float64))
    diff = np.where(both_nan, 0.0, diff)
    return float(np.nan_to_num(diff, nan=np.inf).max())


class Checker:
    """Holds the input sets and the latest reference outputs of each; `check` validates one pass's result."""

    def __init__(self, model: onnx.ModelProto, ctx) -> None:
        self.path = ctx.model_path
        self.atol = float(ctx.options.get("atol", DEFAULT_ATOL))
        self.rtol = float(ctx.options.get("rtol", DEFAULT_RTOL))
        given = ctx.options.get("validation_inputs")
        if given:
            runs = {"the given inputs": given}
        elif has_symbolic_dims(model):
            runs = {f"symbolic dims = {v}": random_inputs(model, symbolic=v) for v in SYMBOLIC_DIM_VALUES}
        else:
            runs = {"random inputs": random_inputs(model)}
        self.feeds, self.reference = {}, {}
        for index, (label, feeds) in enumerate(runs.items()):
            try:
                reference = run_ort(model, feeds)
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
        worst = 0.0
        for label, feeds in self.feeds.items():
            worst = max(worst, self._check(model, pass_name, label, feeds))
        return worst

    def _check(self, model: onnx.ModelProto, pass_name: str, label: str, feeds: dict) -> float:
        where = f" with {label}" if len(self.feeds) > 1 else ""
        try:
            outputs = run_ort(model, feeds)
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
            error = max_abs_error(before, after)
            numeric = before.dtype.kind in "biuf"
            scale = float(np.nanmax(np.abs(before.astype(np.float64)), initial=0.0)) if numeric else 0.0
            bound = self.atol + self.rtol * (scale if np.isfinite(scale) else 0.0)
            if error > bound:
                raise InternalError(f"{self.path}: pass '{pass_name}' changed output '{name}' by max abs error "
                                    f"{error:.3g} > tolerance {bound:.3g} (atol {self.atol:g} + rtol "
                                    f"{self.rtol:g} * max|ref|){where}; rerun without it (--passes) or with "
                                    "--no-validate")
            worst = max(worst, error)
        self.reference[label] = outputs
        return worst
