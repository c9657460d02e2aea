"""How the TVM backend links the compiled module into a shared library for a target."""

from __future__ import annotations

from edgec.targets import Target


def export_options(target: Target) -> dict:
    """Keyword arguments for `Executable.export_library` (host x86-64: TVM's default compiler)."""
    return {}
