"""Run a TensorRT artifact: payload `model.plan`, a serialized engine for one GPU architecture.

TensorRT 10+ I/O is by tensor name: each input gets `set_input_shape` + `set_tensor_address`, each
output an address (or, when its shape depends on the data, e.g. NMS's selected_indices, an
IOutputAllocator that TensorRT calls once it knows the size), then `execute_async_v3(stream)`.
Device memory, copies and the stream come from the CUDA runtime library through ctypes
(`edgec.runtime.cuda`): never torch, so a board needs only TensorRT and libcudart.

A plan runs only on the TensorRT version that built it and on GPUs of the compute capability it
was built for (unless built hardware-compatible), so both are checked, with a clear error, before
TensorRT sees the bytes.
"""

from __future__ import annotations

import numpy as np

from edgec.errors import EdgecError
from edgec.runtime import cuda
from edgec.runtime.artifact import ArtifactError
from edgec.runtime.executors import payload

INSTALL_HINT = ("pip install tensorrt --extra-index-url https://pypi.nvidia.com (on a machine with an NVIDIA GPU "
                "and driver; on Jetson, TensorRT comes with JetPack)")


def _output_allocator(trt, memory):
    """An IOutputAllocator for outputs whose shape TensorRT learns only while running (data-dependent)."""

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, cuda.DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output_async(self, tensor_name, memory_ptr, size, alignment, stream):
            held = self.buffers.get(tensor_name)
            if held is None or held.nbytes < size:  # grow only; reuse across calls
                held = self.buffers[tensor_name] = memory.alloc(size)
            return held.ptr

        def reallocate_output(self, tensor_name, memory_ptr, size, alignment):  # the older, synchronous form
            return self.reallocate_output_async(tensor_name, memory_ptr, size, alignment, None)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(shape)

    return OutputAllocator()


class TensorRTExecutor:
    def __init__(self, manifest: dict, files: dict[str, bytes], device: str):
        plan = payload(files, "model.plan", "tensorrt")
        config = manifest.get("backend_config") or {}
        target = manifest["target"]
        built_for, built_with = config.get("compute_capability"), config.get("tensorrt_version")
        kind, _, index = device.partition(":")
        try:
            memory = cuda.Device(int(index or 0))
        except EdgecError as e:
            raise ArtifactError(f"compiled for an NVIDIA GPU of compute capability {built_for} (target "
                                f"'{target['name']}'), but {e}; run it on a machine with such a GPU") from None
        if kind != "cuda":
            raise EdgecError(f"TensorRT artifacts run on the GPU; device '{device}' is not supported "
                             "(use device='cuda' or 'cuda:N')")
        have = memory.compute_capability()
        if have != built_for and config.get("hardware_compatibility") != "ampere_plus":
            raise ArtifactError(f"the TensorRT plan was built for compute capability {built_for}, but {device} is "
                                f"{have}; recompile with `edgec compile --backend tensorrt` on this GPU")
        try:
            import tensorrt as trt  # noqa: PLC0415
        except ImportError as e:
            raise EdgecError(f"this artifact needs NVIDIA TensorRT {built_with}, which is not importable ({e}); "
                             f"install it: {INSTALL_HINT}") from None
        if trt.__version__ != built_with:
            raise ArtifactError(f"the TensorRT plan was built with TensorRT {built_with}, and this host has "
                                f"{trt.__version__}; plans only load in the version that built them: recompile it "
                                f"here or install tensorrt=={built_with}")
        self._memory = memory
        self._logger = trt.Logger(trt.Logger.ERROR)
        trt.init_libnvinfer_plugins(self._logger, "")  # the EfficientNMS_TRT plugin lives in libnvinfer_plugin
        self._runtime = trt.Runtime(self._logger)  # held: a runtime must outlive the engines it deserialized
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise ArtifactError("TensorRT could not deserialize the payload 'model.plan'; recompile it with "
                                "`edgec compile --backend tensorrt`")
        self._context = self._engine.create_execution_context()
        self._inputs = [i["name"] for i in manifest["inputs"]]
        self._outputs = [o["name"] for o in manifest["outputs"]]
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        if sorted(names) != sorted(self._inputs + self._outputs):
            raise ArtifactError(f"the TensorRT plan's tensors {names} do not match the manifest's inputs and outputs; "
                                "recompile it with `edgec compile --backend tensorrt`")
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._buffers: dict[str, cuda.DeviceBuffer] = {}
        self._allocator = _output_allocator(trt, memory)

    def _buffer(self, name: str, nbytes: int) -> cuda.DeviceBuffer:
        held = self._buffers.get(name)
        if held is None or held.nbytes < nbytes:
            held = self._buffers[name] = self._memory.alloc(nbytes)
        return held

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        context = self._context
        for name, x in zip(self._inputs, inputs):
            x = np.ascontiguousarray(x, dtype=self._dtypes[name])
            buffer = self._buffer(name, x.nbytes)
            self._memory.to_device(buffer, x)
            if not context.set_input_shape(name, x.shape):
                lo, _, hi = self._engine.get_tensor_profile_shape(name, 0)
                raise EdgecError(f"input '{name}' shape {tuple(x.shape)} is outside the engine's optimization "
                                 f"profile ({tuple(lo)} to {tuple(hi)}); recompile with a larger TensorRT profile")
            context.set_tensor_address(name, buffer.ptr)
        dynamic = []
        for name in self._outputs:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # data-dependent: TensorRT sizes it while running
                context.set_output_allocator(name, self._allocator)
                dynamic.append(name)
            else:
                context.set_tensor_address(name, self._buffer(name, _nbytes(shape, self._dtypes[name])).ptr)
        if not context.execute_async_v3(self._memory.stream):
            raise EdgecError("TensorRT execute_async_v3 failed (see TensorRT's log above)")
        self._memory.synchronize()
        results = []
        for name in self._outputs:
            if name in dynamic:
                shape = self._allocator.shapes[name]
                buffer = self._allocator.buffers[name]
            else:
                shape = tuple(context.get_tensor_shape(name))
                buffer = self._buffers[name]
            out = np.empty(shape, dtype=self._dtypes[name])
            self._memory.to_host(buffer, out)
            results.append(out)
        return results


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def open_executor(manifest: dict, files: dict[str, bytes], device: str) -> TensorRTExecutor:
    return TensorRTExecutor(manifest, files, device)
