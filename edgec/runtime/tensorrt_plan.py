"""The 64-byte header of a TensorRT-RTX plan, read without TensorRT or a GPU.

Without a GPU, TensorRT-RTX's own check (`Runtime.get_engine_validity`) answers INVALID for every plan,
so edgec reads the header itself: the runtime checks it before TensorRT sees the bytes, and the
compiler records it in the manifest. The layout is not documented; it was measured on plans built by
TensorRT-RTX 1.7.1.116 (little endian):

    offset  0  4s   magic b"vtrt"
            16 u64  plan size in bytes
            24 4B   TensorRT-RTX version: major, minor, patch, build
            32 u32  compute-capability mask: bit 0 = 7.5, 1 = 8.0, 2 = 8.6, 3 = 8.9, 4 = 12.0, 5 = 12.1
            56 u64  weights bytes (the build log's "Total Weights Memory")

An engine built with TensorRT-RTX's default set (no compute capabilities named) also sets bit 6, which
no enum value explains; edgec always names them, so its plans carry only the bits above.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edgec.runtime.artifact import ArtifactError

SIZE = 64
MAGIC = b"vtrt"
CC_BITS = {"7.5": 0x1, "8.0": 0x2, "8.6": 0x4, "8.9": 0x8, "12.0": 0x10, "12.1": 0x20}


@dataclass(frozen=True)
class PlanHeader:
    version: str
    size: int
    cc_mask: int
    weights_bytes: int

    @property
    def compute_capabilities(self) -> list[str]:
        return [cc for cc, bit in CC_BITS.items() if self.cc_mask & bit]

    @property
    def unknown_cc_bits(self) -> int:
        return self.cc_mask & ~sum(CC_BITS.values())

    def to_json(self) -> dict:
        return {"version": self.version, "cc_mask": self.cc_mask, "weights_bytes": self.weights_bytes}


def read_header(plan: bytes) -> PlanHeader:
    """The header of a TensorRT-RTX plan; ArtifactError when the bytes are not one, or are truncated."""
    if len(plan) < SIZE or plan[:4] != MAGIC:
        raise ArtifactError(f"the payload 'model.plan' is not a TensorRT-RTX plan (no {MAGIC!r} header); recompile "
                            "it with `edgec compile --backend tensorrt`")
    (size,) = struct.unpack_from("<Q", plan, 16)
    (mask,) = struct.unpack_from("<I", plan, 32)
    (weights,) = struct.unpack_from("<Q", plan, 56)
    if size != len(plan):
        raise ArtifactError(f"the TensorRT-RTX plan is {len(plan)} bytes but its header says {size}; recompile it "
                            "with `edgec compile --backend tensorrt`")
    return PlanHeader(".".join(str(b) for b in plan[24:28]), size, mask, weights)


def runs_on(header: PlanHeader, compute_capability: str) -> bool | None:
    """Whether the plan holds code for a GPU of `compute_capability` ("8.6"); None when its mask has bits
    this table does not know (then only TensorRT-RTX, on that GPU, can tell)."""
    if compute_capability in header.compute_capabilities:
        return True
    return None if header.unknown_cc_bits else False


def built_for(config: dict) -> list[str]:
    """The compute capabilities the manifest says a plan was built for ("8.6", ...)."""
    return list((config.get("tensorrt") or {}).get("compute_capabilities") or [])


def gpu_mismatch(config: dict, header: PlanHeader | None, device: str, have: str) -> str | None:
    """None when the plan can run on `device`, a GPU of compute capability `have`; else why not, and what to do.

    TensorRT-RTX: the header's mask decides (`header`); full TensorRT: the manifest's compute capability,
    or any sm_80+ GPU but Jetson's for a hardware-compatible (AMPERE_PLUS) plan."""
    if header is not None:
        if runs_on(header, have) is not False:
            return None
        ccs = header.compute_capabilities
        sm = "sm_" + have.replace(".", "")
        return (f"the TensorRT-RTX plan holds code for compute capability {', '.join(ccs)}, but {device} is {have}; "
                f"recompile it for this GPU: `edgec compile --backend tensorrt --target cuda-{sm}`")
    ccs = built_for(config)
    portable = config.get("hardware_compatibility") == "ampere_plus" and float(have) >= 8.0 and have != "8.7"
    if have in ccs or portable:
        return None
    return (f"the TensorRT plan was built for compute capability {', '.join(ccs)}, but {device} is {have}; recompile "
            "it with `edgec compile --backend tensorrt` on this GPU")
