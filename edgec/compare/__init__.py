"""`edgec compare`: find the first tensor where a backend, precision or model copy diverges."""

from edgec.compare.diff import CompareResult, TensorDiff, compare  # noqa: F401
