"""The Relax compilation pipeline the TVM backend uses for a target."""

from __future__ import annotations

from edgec.backends.base import CompileOptions
from edgec.targets import Target


def relax_pipeline(target: Target, options: CompileOptions):
    """TVM's default pipeline for the target's kind (legalize, fuse, lower; no schedules yet)."""
    return "default"
