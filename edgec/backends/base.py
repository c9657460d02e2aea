"""The backend interface: `compile(graph, target, options) -> Payload`, plus the registry."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import onnx

from edgec.errors import EdgecError
from edgec.targets import Target

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class CompileOptions:
    precision: str = "fp32"
    tuning_db: str | None = None
    model_path: str = "<model>"  # for error messages
    weightless: bool = False  # a weight-stripped engine, refitted at load (backends with `weightless = True`)
    winograd: bool = True  # TVM on CPUs: 3x3 stride-1 convs as Winograd convs (False: direct, smaller artifact)
    progress: Callable[[str], None] | None = field(default=None, compare=False)  # told each stage as it starts

    def stage(self, name: str) -> None:
        if self.progress is not None:
            self.progress(name)


@dataclass
class Payload:
    """Files for the artifact, plus what the runtime needs to know about them (`backend_config`)."""

    files: dict[str, bytes]
    config: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)  # measured while compiling (e.g. build seconds); not in the artifact,
    # which stays byte-identical across rebuilds


class Backend(ABC):
    name: str
    precisions: tuple[str, ...] = ("fp32",)
    int8_symmetric_activations: bool = False  # zero-point-0 activations (TensorRT's explicit quantization)
    devices: tuple[str, ...] = ("cpu",)
    weightless: bool = False  # can build weight-stripped payloads (CompileOptions.weightless)

    def check(self, target: Target, options: CompileOptions) -> None:
        """Raise UnsupportedError (exit 2, with the alternative) when this backend cannot serve the request."""
        from edgec.errors import UnsupportedError

        if options.precision not in PRECISIONS:
            raise EdgecError(f"unknown precision '{options.precision}'; choose one of {', '.join(PRECISIONS)}")
        if options.precision not in self.precisions:
            raise UnsupportedError(f"backend '{self.name}' does not support precision '{options.precision}' yet "
                                   f"(it supports {', '.join(self.precisions)})")
        if target.device not in self.devices:
            raise UnsupportedError(f"backend '{self.name}' cannot compile for target '{target.name}' "
                                   f"(device {target.device}); it targets {', '.join(self.devices)}")
        if options.weightless and not self.weightless:
            raise UnsupportedError(f"--weightless: backend '{self.name}' has no weight-stripped artifacts; use it with "
                                   "--backend tensorrt")

    @abstractmethod
    def compile(self, model: onnx.ModelProto, target: Target, options: CompileOptions) -> Payload:
        """Compile the optimized model for target; never write outside a private temporary directory."""

    def import_toolchain(self) -> None:
        """Import what compiling needs (ONNX Runtime validates every pass): a one-time cost per process, which
        `compile s` leaves out (CompileResult.toolchain_s)."""
        import onnxruntime  # noqa: F401

    def required_cpu_features(self, target: Target) -> tuple[str, ...]:
        """CPU features the payload's native code needs on the executing host."""
        return target.cpu_features

    nms_strategy: str = "native"  # how the backend runs the NonMaxSuppression nodes it accepts

    def nms_unsupported(self, model: onnx.ModelProto, node: onnx.NodeProto, target: Target) -> str | None:
        """None when this backend runs NonMaxSuppression `node` with ONNX's semantics for `target`; else why not,
        and edgec runs it on the host instead (edgec/backends/nms_placement.py)."""
        return f"the {self.name} backend has no NonMaxSuppression"


_BACKENDS = {"tvm": "edgec.backends.tvm.backend", "ort": "edgec.backends.ort",
             "tensorrt": "edgec.backends.tensorrt.backend"}


def backend_names() -> list[str]:
    return list(_BACKENDS)


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS:
        raise EdgecError(f"unknown backend '{name}'; choose one of {', '.join(_BACKENDS)}")
    return importlib.import_module(_BACKENDS[name]).BACKEND
