"""Which TensorRT builds a target's engine: full TensorRT (`tensorrt`) or TensorRT-RTX (`tensorrt_rtx_bindings`).

- `rtx`: TensorRT-RTX, always: one engine for sm_80, sm_86, sm_89 and sm_120, built ahead of time on any
  x86-64 host, GPU or not.
- `cuda-sm_XX` (and `cuda`, this host's GPU) for an architecture TensorRT-RTX compiles for (RTX_ARCHS): full
  TensorRT where it is installed (it builds on that GPU), else TensorRT-RTX (no GPU needed).
- every other architecture (Hopper sm_90, Jetson Orin sm_87, data-centre Blackwell sm_100, ...): full TensorRT
  only; without it, one error naming what TensorRT-RTX covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgec.errors import UnsupportedError
from edgec.runtime.tensorrt_packages import LABELS, import_flavour, install_hint
from edgec.runtime.tensorrt_plan import CC_BITS
from edgec.targets import Target

# TensorRT-RTX's ComputeCapability enum (SM75 ... SM121) = the plan header's bits
RTX_ARCHS = tuple("sm_" + cc.replace(".", "") for cc in CC_BITS)


@dataclass(frozen=True)
class Flavour:
    name: str  # "full" | "rtx"
    module: object  # the imported TensorRT module
    archs: tuple[str, ...]  # the SM architectures the engine is built for

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def version(self) -> str:
        return self.module.__version__


def choose(target: Target) -> Flavour:
    """The flavour that builds `target`'s engine; UnsupportedError (exit 2) naming what to install."""
    archs = target.gpu_archs
    if target.name == "rtx":
        return Flavour("rtx", import_flavour("rtx"), archs)
    try:
        return Flavour("full", import_flavour("full"), archs)
    except UnsupportedError as missing_full:
        if set(archs) <= set(RTX_ARCHS):
            return Flavour("rtx", _rtx_or_both_missing(target, missing_full), archs)
        raise UnsupportedError(
            f"target '{target.name}' ({', '.join(archs)}) needs full NVIDIA TensorRT: {missing_full}. TensorRT-RTX "
            f"builds only for {', '.join(RTX_ARCHS)}, not Hopper (sm_90), Jetson Orin (sm_87) or data-centre "
            "Blackwell (sm_100); for RTX-class GPUs compile with --target rtx") from None


def _rtx_or_both_missing(target: Target, missing_full: UnsupportedError):
    try:
        return import_flavour("rtx")
    except UnsupportedError:
        raise UnsupportedError(f"the tensorrt backend needs TensorRT or TensorRT-RTX for target '{target.name}', and "
                               f"neither is importable here; install TensorRT-RTX (builds without a GPU): "
                               f"{install_hint('rtx')}") from None
