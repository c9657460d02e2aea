"""Run a TVM Relax VM artifact: payload `model.so` (kernels, VM bytecode and constants)."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from edgec.errors import EdgecError

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
    if kind == "cpu":
        return tvm.cpu(int(index or 0))
    if kind == "cuda":
        dev = tvm.cuda(int(index or 0))
        if not dev.exist:
            raise EdgecError(f"device '{device}' is not available on this host (no CUDA GPU found)")
        return dev
    raise EdgecError(f"unknown device '{device}'; use cpu, cuda or cuda:N")


class TvmExecutor:
    def __init__(self, manifest: dict, files: dict[str, bytes], device: str):
        tvm = _import_tvm()
        self._dev = _device(tvm, device)
        with tempfile.TemporaryDirectory(prefix="edgec-") as tmp:
            lib_path = os.path.join(tmp, "model.so")
            with open(lib_path, "wb") as f:
                f.write(files["model.so"])  # bytes already verified against the manifest
            lib = tvm.runtime.load_module(lib_path)  # mapped now; the file may go
        self._vm = tvm.runtime.vm.VirtualMachine(lib, self._dev)
        self._main = self._vm["main"]
        self._tensor = tvm.runtime.tensor
        self._n_outputs = len(manifest["outputs"])

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        result = self._main(*[self._tensor(x, self._dev) for x in inputs])
        outs = [result] if self._n_outputs == 1 and hasattr(result, "numpy") else list(result)
        return [o.numpy() for o in outs]


def open_executor(manifest: dict, files: dict[str, bytes], device: str) -> TvmExecutor:
    return TvmExecutor(manifest, files, device)
