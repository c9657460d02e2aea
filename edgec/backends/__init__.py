"""Backends turn an optimized ONNX graph into payload files for one target; one shared interface."""

from edgec.backends.base import Backend, CompileOptions, Payload, get_backend, backend_names  # noqa: F401
