"""Run a TVM Relax VM artifact: payload `model.so` (kernels, VM bytecode and constants)."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from edgec.errors import EdgecError
from edgec.runtime import InputError
from edgec.runtime.artifact import ArtifactError
from edgec.runtime.executors import payload
from edgec.runtime.threads import default_tvm_threads

os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")  # never JIT-build torch glue at load time
default_tvm_threads()  # TVM's own default is half the CPUs: one thread on a 2-core host


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
        self._on_cpu = self._dev.dlpack_device_type() == CPU_DLPACK
        if self._on_cpu:
            from tvm_ffi import from_dlpack  # noqa: PLC0415 (installed with TVM)

            self._to_device = lambda x: from_dlpack(_zero_copy_ready(x))
        else:
            self._to_device = lambda x: tvm.runtime.tensor(x, self._dev)
        self._n_outputs = len(manifest["outputs"])

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        result = self._main(*[self._to_device(x) for x in inputs])
        outs = [result] if self._n_outputs == 1 and hasattr(result, "numpy") else list(result)
        # A CPU output is fresh memory the VM hands over: viewing it is safe and saves a copy.
        return [np.from_dlpack(o) if self._on_cpu else o.numpy() for o in outs]


CPU_DLPACK = 1  # kDLCPU
ALIGNMENT = 64  # bytes TVM allocates with and its kernels may assume


def _zero_copy_ready(x: np.ndarray) -> np.ndarray:
    """`x` itself when TVM can use its memory in place (C-contiguous, writeable, 64-byte aligned), else
    a copy into such memory. tvm.runtime.tensor's allocate-and-copy cost ~65 us a call, more than a
    small network's whole run."""
    if x.flags.c_contiguous and x.flags.writeable and x.ctypes.data % ALIGNMENT == 0:
        return x
    return _aligned_copy(x)


def _aligned_copy(x: np.ndarray) -> np.ndarray:
    raw = np.empty(x.nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    out = raw[start:start + x.nbytes].view(x.dtype).reshape(x.shape)
    out[...] = x
    return out


def open_executor(manifest: dict, files: dict[str, bytes], device: str) -> TvmExecutor:
    return TvmExecutor(manifest, files, device)
