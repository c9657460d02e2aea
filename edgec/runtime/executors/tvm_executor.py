"""Run a TVM Relax VM artifact: payload `model.so` (kernels, VM bytecode and constants)."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from edgec.errors import EdgecError
from edgec.runtime.artifact import ArtifactError
from edgec.runtime.executors import payload
from edgec.tvm_process import prepare_tvm


def _import_tvm():
    prepare_tvm()  # threads and no torch glue, before TVM's first import and first kernel
    try:
        import tvm  # noqa: PLC0415
        import tvm.runtime.vm  # noqa: PLC0415
    except ImportError as e:
        raise EdgecError(f"this artifact needs the TVM runtime, which is not importable ({e}); install it with "
                         "`pip install apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1`") from None
    return tvm


def _device(tvm, device: str):
    kind, _, index = device.partition(":")
    if kind == "cuda":
        dev = tvm.cuda(int(index or 0))
        if not dev.exist:
            raise ArtifactError(f"device '{device}' is not available on this host (no CUDA GPU found)")
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
        self._n_outputs = len(manifest["outputs"])
        self._tensor = lambda x: tvm.runtime.tensor(x, self._dev)
        from tvm_ffi import from_dlpack  # noqa: PLC0415 (installed with TVM)

        self._from_dlpack = from_dlpack
        self._staging: dict[int, _Staging] = {}  # input index -> its staging buffer

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if not self._on_cpu:
            result = self._main(*[self._tensor(x) for x in inputs])
            return [o.numpy() for o in self._outputs(result)]
        args = [self._cpu_tensor(i, x) for i, x in enumerate(inputs)]
        outs = self._outputs(self._main(*args))
        # A CPU output is fresh memory the VM hands over, so viewing it is safe and saves a copy; unless
        # the graph passes an input through, and the output is the caller's array or the staging buffer.
        inputs_at = {t.data_ptr() for t in args}
        return [np.from_dlpack(o).copy() if o.data_ptr() in inputs_at else np.from_dlpack(o) for o in outs]

    def bind(self, inputs: list[np.ndarray]):
        """Copy `inputs` to the device once; the returned callable runs the model on them and waits for the
        device to finish, leaving the outputs there: what `edgec bench` times (kernels and launches, no
        host transfers)."""
        args = [self._tensor(x) for x in inputs]

        def run() -> None:
            self._main(*args)
            self._dev.sync()

        return run

    def _outputs(self, result) -> list:
        return [result] if self._n_outputs == 1 and hasattr(result, "data_ptr") else list(result)

    def _cpu_tensor(self, index: int, x: np.ndarray):
        """A TVM view of `x` when its memory is usable in place (writeable, 64-byte aligned: TVM's kernels
        load inputs with aligned vector instructions), else of a staging buffer `x` is copied into.
        numpy's own allocations are only 16-byte aligned, so most calls copy; allocating per call (or
        tvm.runtime.tensor's allocate-and-copy, ~65 us) cost more than a small network's whole run."""
        tensor = self._from_dlpack(x) if x.flags.writeable else None
        source = tensor.data_ptr() if tensor is not None else x.ctypes.data
        if tensor is not None and source % ALIGNMENT == 0:
            return tensor
        staging = self._staging.get(index)
        if staging is None or not staging.fits(x):
            staging = self._staging[index] = _Staging(x.shape, x.dtype, self._from_dlpack)
        array, view = staging.at(source)
        np.copyto(array, x)
        return view


class _Staging:
    """An input's reusable aligned buffer. Where it starts within a page follows the source's page offset:
    glibc's memcpy (`rep movsb`) runs 10x slower on AMD Zen when the destination is just past the source
    modulo 4 KiB (4K aliasing: 27 us instead of 2 us for a 48 KiB input), so the copy lands half a page away."""

    def __init__(self, shape: tuple, dtype: np.dtype, from_dlpack):
        self.shape, self.dtype = shape, dtype
        self.nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self._raw = np.empty(self.nbytes + 2 * PAGE, dtype=np.uint8)
        self._base = -self._raw.ctypes.data % PAGE  # index of the first page boundary
        self._from_dlpack = from_dlpack
        self._views: dict[int, tuple[np.ndarray, object]] = {}  # offset in page -> (array, TVM view)

    def fits(self, x: np.ndarray) -> bool:
        return self.shape == x.shape and self.dtype == x.dtype

    def at(self, source: int) -> tuple[np.ndarray, object]:
        offset = (source + PAGE // 2) % PAGE // ALIGNMENT * ALIGNMENT
        views = self._views.get(offset)
        if views is None:
            start = self._base + offset
            array = self._raw[start:start + self.nbytes].view(self.dtype).reshape(self.shape)
            views = self._views[offset] = (array, self._from_dlpack(array))
        return views


CPU_DLPACK = 1  # kDLCPU
ALIGNMENT = 64  # bytes TVM allocates with and its kernels assume
PAGE = 4096


def open_executor(manifest: dict, files: dict[str, bytes], device: str, path: str | None = None) -> TvmExecutor:
    return TvmExecutor(manifest, files, device)
