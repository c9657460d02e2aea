"""Backends turn an optimized ONNX graph into payload files for one target; one shared interface."""

from edgec.backends.base import Backend, CompileOptions, Payload, backend_names, get_backend  # noqa: F401
