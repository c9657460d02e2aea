"""Only the host's tensor intrinsics for MetaSchedule, not all of TVM's.

`TuneContext` imports `tvm.s_tir.tensor_intrin`, whose package init parses the CUDA, ROCm, Hexagon,
ARM and x86 intrinsics from TVMScript: about 80 s on a busy 2-core host, 53 s of it CUDA's. A CPU
search on this host only needs the host ISA's intrinsics, so while tuning contexts are created the
package is a stand-in with the real directory as its path: its host submodule imports as usual and
the other ones are never parsed. A later real import of the package still runs its init.
"""

from __future__ import annotations

import importlib
import sys
import types
from contextlib import contextmanager

from edgec.targets import host_arch

_PACKAGE = "tvm.s_tir.tensor_intrin"
_HOST_MODULE = {"x86_64": "x86", "aarch64": "arm_cpu"}


@contextmanager
def host_intrinsics_only():
    if _PACKAGE in sys.modules:  # already imported for real: nothing to save
        yield
        return
    import tvm.s_tir

    directory = next(iter(tvm.s_tir.__path__)) + "/tensor_intrin"
    stand_in = types.ModuleType(_PACKAGE)
    stand_in.__path__ = [directory]
    sys.modules[_PACKAGE] = stand_in
    try:
        if host_arch() in _HOST_MODULE:
            importlib.import_module(f"{_PACKAGE}.{_HOST_MODULE[host_arch()]}")
        yield
    finally:
        del sys.modules[_PACKAGE]
