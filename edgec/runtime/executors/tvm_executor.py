"""Run a TVM Relax VM artifact: payload `model.so` (kernels, VM bytecode and constants)."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from edgec.errors import EdgecError
from edgec.runtime import InputError
from edgec.runtime.artifact import ArtifactError
from edgec.runtime.executors import payload

os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")  # never JIT-build torch glue at load time


def _import_tvm():
    try:
        import tvm  # noqa: PLC0415
        import tvm.runtime.vm  # noqa: PLC0415
    except ImportError as e:
        raise EdgecError(f"this artifact needs the TVM runtime, which is not importable ({e}); "
                         "install it with `pip install apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1`") from None
    return tvm


def _device(tvm, device: str):
    kind, _, index = device.partition(":")
    if kind == "cuda":
        dev = tvm.cuda(int(index or 0))
        if not dev.exist:
            raise InputError(f"device '{device}' is not available on this host (no CUDA GPU found)")
        return dev
    return tvm.cpu(int(index or 0))  # edgec.runtime.load has checked the device name


class TvmExecutor:
    def __init__(self, manifest: dict, files: dict[str, bytes], device: str):
        library = payload(files, "model.so", "tvm")  # bytes already verified against the manifest
        tvm = _import_tvm()
        self._dev = _device(tvm, device)
        try:
            with tempfile.TemporaryDirectory(prefix="edgec-") as tmp:  # private (0700) directory
                lib_path = os.path.join(tmp, "model.so")
                with open(lib_path, "wb") as f:
                    f.write(library)
                lib = tvm.runtime.load_module(lib_path)  # mapped now; the file may go
            self._vm = tvm.runtime.vm.VirtualMachine(lib, self._dev)
            self._main = self._vm["main"]
        except Exception as e:  # TVMError / RuntimeError / AttributeError from the loader or the VM
            detail = " ".join(str(e).split())[-300:] or type(e).__name__
            raise ArtifactError(f"the TVM runtime refused the payload 'model.so' ({detail}); "
                                "recompile it with `edgec compile`") from None
        self._tensor = tvm.runtime.tensor
        self._n_outputs = len(manifest["outputs"])

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        result = self._main(*[self._tensor(x, self._dev) for x in inputs])
        outs = [result] if self._n_outputs == 1 and hasattr(result, "numpy") else list(result)
        return [o.numpy() for o in outs]


def open_executor(manifest: dict, files: dict[str, bytes], device: str) -> TvmExecutor:
    return TvmExecutor(manifest, files, device)
