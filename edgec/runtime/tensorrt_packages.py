"""Which Python package is TensorRT: the full `tensorrt` or TensorRT-RTX's `tensorrt_rtx_bindings`.

Both expose the same classes (Builder, OnnxParser, Runtime, ICudaEngine, ...); a plan loads only in the
flavour, and the version, that built it. `import_flavour` is the one place either is imported, for the
compiler and the runtime alike.

    "full": `tensorrt` (pip install tensorrt --extra-index-url https://pypi.nvidia.com; JetPack on Jetson)
    "rtx":  `tensorrt_rtx_bindings` (PyPI wheels tensorrt-rtx-cu13-libs + tensorrt-rtx-cu13-bindings), or
            `tensorrt_rtx`, the module name of NVIDIA's SDK tarball
"""

from __future__ import annotations

import importlib

from edgec.errors import UnsupportedError

MODULES = {"full": ("tensorrt",), "rtx": ("tensorrt_rtx_bindings", "tensorrt_rtx")}
LABELS = {"full": "TensorRT", "rtx": "TensorRT-RTX"}
INSTALL = {"full": "pip install tensorrt{pin} --extra-index-url https://pypi.nvidia.com (on a machine with an NVIDIA "
                   "GPU and driver; on Jetson, TensorRT comes with JetPack)",
           "rtx": "pip install tensorrt-rtx-cu13-libs{pin} tensorrt-rtx-cu13-bindings{pin} (x86-64 Linux; `make setup` "
                  "installs the versions requirements.lock pins)"}


def install_hint(flavour: str, version: str | None = None) -> str:
    return INSTALL[flavour].format(pin=f"=={version}" if version else "")


def import_flavour(flavour: str, version: str | None = None):
    """The module for `flavour` ("full" or "rtx"); UnsupportedError naming the package and how to install it
    (`version`, when a plan needs that one)."""
    errors = []
    for name in MODULES[flavour]:
        try:
            return importlib.import_module(name)
        except ImportError as e:  # also a wheel whose native libraries are missing
            errors.append(str(e))
    wanted = f"{LABELS[flavour]} {version}" if version else LABELS[flavour]
    raise UnsupportedError(f"{wanted} is not importable here ({errors[0]}); install it: "
                           f"{install_hint(flavour, version)}")

