"""Import one family of TVM's tensor intrinsics, not all of them.

Importing any `tvm.s_tir.tensor_intrin.X` runs the package init, which parses the CUDA, ROCm, Hexagon,
ARM and x86 intrinsics from TVMScript: 35 s here on a quiet 2-core host, 45 s with torch loaded,
about 80 s on a busy one. Two things make it slow: every family is parsed, and TVMScript's parser
calls `inspect.stack()` for each of ~2,500 functions, which reads the source lines of every frame
(scanning all of `sys.modules` for each one). `only_intrinsics(name)` imports just the submodule
`name`, under a stand-in package whose path is the real directory, with frames taken without source
context (TVMScript uses the frames; the source lines only to spot `@I.ir_module` classes, which no
intrinsic module has). The submodule stays imported; a later real import of the package runs its
init and finds it there.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import types
from contextlib import contextmanager

_PACKAGE = "tvm.s_tir.tensor_intrin"
_ARCH_MODULE = {"x86_64": "x86", "aarch64": "arm_cpu"}


def only_intrinsics(name: str) -> types.ModuleType:
    """The module `tvm.s_tir.tensor_intrin.<name>`, imported without its siblings."""
    qualified = f"{_PACKAGE}.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    with _stand_in_package():
        stack = inspect.stack
        inspect.stack = functools.partial(stack, 0)  # frames without their source lines
        try:
            return importlib.import_module(qualified)
        finally:
            inspect.stack = stack


@contextmanager
def arch_intrinsics_only(arch: str):
    """While in the block, `tvm.s_tir.tensor_intrin` is a stand-in holding only the intrinsics of the ISA `arch`
    ("x86_64", "aarch64": the target's, which a board may measure), what MetaSchedule's `TuneContext` imports it
    for, for a CPU search."""
    with _stand_in_package():
        if arch in _ARCH_MODULE:
            only_intrinsics(_ARCH_MODULE[arch])
        yield


@contextmanager
def _stand_in_package():
    if _PACKAGE in sys.modules:  # already imported for real (or stood in): nothing to save
        yield
        return
    import tvm.s_tir

    stand_in = types.ModuleType(_PACKAGE)
    stand_in.__path__ = [next(iter(tvm.s_tir.__path__)) + "/tensor_intrin"]
    sys.modules[_PACKAGE] = stand_in
    try:
        yield
    finally:
        del sys.modules[_PACKAGE]
