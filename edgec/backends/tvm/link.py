"""How the TVM backend links the compiled module into a shared library for a target."""

from __future__ import annotations

import shutil

from edgec.errors import UnsupportedError
from edgec.targets import Target, host_arch

# GCC cross drivers that link for a non-host arch, with the Debian package that provides each.
CROSS_LINKERS = {"aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")}


def export_options(target: Target) -> dict:
    """Keyword arguments for `Executable.export_library`: TVM's default compiler on the host's own arch,
    a GCC cross driver otherwise. Raises UnsupportedError naming the missing tool and its package."""
    if target.arch == host_arch():
        return {}
    if target.arch not in CROSS_LINKERS:
        raise UnsupportedError(f"target '{target.name}': edgec cannot link {target.arch} code on this "
                               f"{host_arch()} host (it cross-links for {', '.join(CROSS_LINKERS)})")
    tool, package = CROSS_LINKERS[target.arch]
    if shutil.which(tool) is None:
        raise UnsupportedError(f"target '{target.name}': the cross linker {tool} is not on PATH; install it with "
                               f"`sudo apt-get install {package}` (or `make toolchain-aarch64`)")
    from tvm.support import cc  # noqa: PLC0415  (the compiler stack, imported only when compiling)

    return {"fcompile": cc.cross_compiler(tool)}
