"""Does this output match? The rules, once: elementwise tolerances, cosine similarity, exact equality.

A rule is called on (got, want) arrays and returns a `Comparison`: the error statistics and whether
the rule holds, so `bool(rule(got, want))` answers and the numbers say by how much (Polygraphy's
CompareFunc.simple, as data). Every statistic is computed in float64; NaN in the same place in both
arrays counts as equal, anywhere else as an infinite error. Validation of graph passes, `edgec
compare`, `--backend auto`, emulated runs and reports all judge with these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """How `got` differs from `want`, and the verdict of the rule that made it."""

    ok: bool
    shape: list  # want's shape
    same_shape: bool  # when not, no statistic is computed
    max_abs_err: float | None = None
    mean_abs_err: float | None = None
    rel_err: float | None = None  # max abs error / max |want| (the error itself where want is all zero)
    cosine: float | None = None
    bound: float | None = None  # the largest error an Elementwise rule allowed

    def __bool__(self) -> bool:
        return self.ok


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two arrays, flattened, in float64; 1.0 for two zero vectors, 0.0 for one."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms > 0 else float(np.array_equal(a, b))


def _stats(got: np.ndarray, want: np.ndarray) -> tuple[Comparison, np.ndarray | None]:
    """(statistics with ok=True, the elementwise |got - want|) or a shape mismatch with ok=False."""
    got, want = np.asarray(got), np.asarray(want)
    shape = list(want.shape)
    if got.shape != want.shape:
        return Comparison(False, shape, False), None
    if got.dtype.kind not in "biuf" or want.dtype.kind not in "biuf":  # strings, objects: equality only
        same = bool(np.array_equal(got, want))
        return Comparison(same, shape, True, 0.0 if same else float("inf")), None
    if want.size == 0:
        return Comparison(True, shape, True, 0.0, 0.0, 0.0, 1.0), np.zeros(0)
    a, b = got.astype(np.float64), want.astype(np.float64)
    err = np.abs(a - b)
    err = np.where(np.isnan(a) & np.isnan(b), 0.0, np.nan_to_num(err, nan=np.inf))
    scale = float(np.nanmax(np.abs(b))) if not np.isnan(b).all() else 0.0
    finite = np.isfinite(a) & np.isfinite(b)
    cosine = cosine_similarity(a[finite], b[finite]) if finite.any() else 0.0
    max_err = float(err.max())
    return Comparison(True, shape, True, max_err, float(err.mean()), max_err / scale if scale > 0 else max_err,
                      cosine), err


def errors(got: np.ndarray, want: np.ndarray) -> Comparison:
    """The statistics alone, no rule (ok means the shapes agree): what a report prints."""
    return _stats(got, want)[0]


@dataclass(frozen=True)
class Elementwise:
    """|got - want| <= atol + rtol * |want| everywhere (`relative_to="element"`, numpy's allclose), or
    <= atol + rtol * max|want| (`relative_to="max"`: one bound for the tensor, for values that pass
    through zero)."""

    atol: float
    rtol: float
    relative_to: str = "element"

    def __call__(self, got: np.ndarray, want: np.ndarray) -> Comparison:
        result, err = _stats(got, want)
        if err is None:
            return result
        w = np.abs(np.asarray(want, dtype=np.float64))
        scale = w if self.relative_to == "element" else (float(np.nanmax(w)) if w.size and not np.isnan(w).all()
                                                        else 0.0)
        bound = self.atol + self.rtol * np.nan_to_num(scale, nan=0.0, posinf=0.0)
        ok = bool((err <= bound).all())
        return Comparison(ok, result.shape, True, result.max_abs_err, result.mean_abs_err, result.rel_err,
                          result.cosine, float(np.max(bound)) if np.ndim(bound) else float(bound))

    def describe(self) -> str:
        scale = "|ref|" if self.relative_to == "element" else "max|ref|"
        return f"atol {self.atol:g} + rtol {self.rtol:g} * {scale}"


@dataclass(frozen=True)
class Cosine:
    """cosine_similarity(got, want) >= min_cosine, and every value finite where want's is: the rule for
    reduced precision, where rounding steps grow through the layers (one int8 step before a sigmoid is
    several after it) but a broken scale or weight drops the cosine far below (0.33)."""

    min_cosine: float

    def __call__(self, got: np.ndarray, want: np.ndarray) -> Comparison:
        result, err = _stats(got, want)
        if err is None:
            return result
        ok = result.cosine is not None and result.cosine >= self.min_cosine and bool(np.isfinite(err).all())
        return Comparison(ok, result.shape, True, result.max_abs_err, result.mean_abs_err, result.rel_err,
                          result.cosine)

    def describe(self) -> str:
        return f"cosine >= {self.min_cosine:g}"


@dataclass(frozen=True)
class Exact:
    """Bit-for-bit equal values (NaN matching NaN): integer outputs, indices, selections."""

    def __call__(self, got: np.ndarray, want: np.ndarray) -> Comparison:
        result, err = _stats(got, want)
        if err is None:
            return result
        return Comparison(result.max_abs_err == 0.0, result.shape, True, result.max_abs_err, result.mean_abs_err,
                          result.rel_err, result.cosine)

    def describe(self) -> str:
        return "exact"


REDUCED_PRECISIONS = ("fp16", "bf16", "int8")


def for_precision(precision: str, atol: float = 1e-4, rtol: float = 1e-3, min_cosine: float = 0.999):
    """The default rule for comparing a backend's `precision` build with an fp32 reference: elementwise
    for fp32, cosine for reduced precisions."""
    return Cosine(min_cosine) if precision in REDUCED_PRECISIONS else Elementwise(atol, rtol)
