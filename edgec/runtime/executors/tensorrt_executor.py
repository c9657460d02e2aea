"""Run a TensorRT artifact: payload `model.plan`, a serialized engine for the GPUs it was built for.

`backend_config.tensorrt.flavour` says which TensorRT built it ("full": `tensorrt`, "rtx": TensorRT-RTX's
`tensorrt_rtx_bindings`); a plan loads only in that flavour and version. Before TensorRT sees the bytes,
in this order, each a clear error:
1. a TensorRT-RTX plan's 64-byte header is well formed and names the manifest's version (tensorrt_plan.py);
2. there is a GPU (otherwise: refused, naming the compute capabilities the plan was built for);
3. the GPU's compute capability is one the plan holds code for (the header's mask; full TensorRT: the
   manifest's compute capability, or AMPERE_PLUS hardware compatibility);
4. the flavour's package is importable and is the version that built the plan;
5. TensorRT-RTX: `Runtime.get_engine_validity` does not say INVALID (its diagnostics named).
A weight-stripped plan is then refitted from the artifact's `weights.onnx` (OnnxParserRefitter).

TensorRT-RTX finishes compiling its kernels for the actual GPU when the execution context is created and
when new input shapes arrive; those kernels go to a runtime cache kept beside the artifact
(`ARTIFACT.sm_XX.runtime-cache`), loaded at the next start (TensorRT-RTX discards one recorded with another
GPU, driver or version) and rewritten after a call with new input shapes. A folder that cannot be written
only means compiling again next time.

I/O by tensor name: each input gets `set_input_shape` + `set_tensor_address`, each output an address (or,
when its shape depends on the data, an IOutputAllocator that TensorRT calls once it knows the size), then
`execute_async_v3(stream)`. Device memory, copies and the stream come from the CUDA runtime library through
ctypes (`edgec.runtime.cuda`): never torch, so a board needs only TensorRT and libcudart.

Untested on this project's machines (no GPU): everything after step 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgec.errors import EdgecError
from edgec.files import write_atomic
from edgec.runtime import cuda
from edgec.runtime.artifact import ArtifactError
from edgec.runtime.executors import payload
from edgec.runtime.tensorrt_packages import LABELS, import_flavour, install_hint
from edgec.runtime.tensorrt_plan import built_for, gpu_mismatch, read_header


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


def _logger(trt):
    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                if "Thread context has not been set" not in msg:
                    self.errors.append(" ".join(str(msg).split()))

    return Logger()


class RuntimeCache:
    """TensorRT-RTX's JIT-compiled kernels for this GPU, in a file beside the artifact."""

    def __init__(self, engine, path: Path | None):
        self.config = engine.create_runtime_config()
        self.cache = self.config.create_runtime_cache()
        self.path, self.saved = path, b""
        if path is not None and path.is_file():
            blob = path.read_bytes()
            if self.cache.deserialize(blob):  # False: recorded on another GPU, driver or version; start empty
                self.saved = blob
        self.config.set_runtime_cache(self.cache)

    def save(self) -> None:
        blob = bytes(self.cache.serialize())
        if self.path is None or blob == self.saved:
            return
        try:
            write_atomic(self.path, lambda tmp: Path(tmp).write_bytes(blob))
        except EdgecError:  # a read-only folder: the kernels are compiled again next time
            return
        self.saved = blob


class TensorRTExecutor:
    def __init__(self, manifest: dict, files: dict[str, bytes], device: str, path: str | None = None):
        plan = payload(files, "model.plan", "tensorrt")
        config = manifest.get("backend_config") or {}
        facts = config.get("tensorrt") or {}
        flavour, built_with = facts.get("flavour", "full"), facts.get("version")
        header = read_header(plan) if flavour == "rtx" else None
        if header is not None and header.version != built_with:
            raise ArtifactError(f"the TensorRT-RTX plan's header says version {header.version} but the manifest "
                                f"{built_with}; recompile it with `edgec compile --backend tensorrt`")
        ccs = header.compute_capabilities if header is not None else built_for(config)
        target = manifest["target"]
        kind, _, index = device.partition(":")
        try:
            memory = cuda.Device(int(index or 0))
        except EdgecError as e:
            raise ArtifactError(f"compiled for an NVIDIA GPU of compute capability {_one_of(ccs)} (target "
                                f"'{target['name']}'), but {e}; run it on a machine with such a GPU") from None
        if kind != "cuda":
            raise EdgecError(f"TensorRT artifacts run on the GPU; device '{device}' is not supported "
                             "(use device='cuda' or 'cuda:N')")
        have = memory.compute_capability()
        mismatch = gpu_mismatch(config, header, device, have)
        if mismatch:
            raise ArtifactError(mismatch)
        trt = self._import(flavour, built_with)
        self._memory = memory
        self._logger = _logger(trt)
        if flavour == "full":
            trt.init_libnvinfer_plugins(self._logger, "")  # the EfficientNMS_TRT plugin lives in libnvinfer_plugin
        self._runtime = trt.Runtime(self._logger)  # held: a runtime must outlive the engines it deserialized
        if flavour == "rtx":
            self._check_validity(trt, plan, device, have)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise ArtifactError(f"{LABELS[flavour]} could not deserialize the payload 'model.plan' "
                                f"({'; '.join(self._logger.errors[-2:]) or 'no message'}); recompile it with "
                                "`edgec compile --backend tensorrt`")
        if config.get("weights") == "stripped":
            self._refit(trt, payload(files, "weights.onnx", "tensorrt"))
        self._cache = None
        if flavour == "rtx":
            cache_path = Path(f"{path}.sm_{have.replace('.', '')}.runtime-cache") if path else None
            self._cache = RuntimeCache(self._engine, cache_path)
            self._context = self._engine.create_execution_context(self._cache.config)
        else:
            self._context = self._engine.create_execution_context()
        self._shapes_seen: set[tuple] = set()
        self._inputs = [i["name"] for i in manifest["inputs"]]
        self._outputs = [o["name"] for o in manifest["outputs"]]
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        if sorted(names) != sorted(self._inputs + self._outputs):
            raise ArtifactError(f"the TensorRT plan's tensors {names} do not match the manifest's inputs and outputs; "
                                "recompile it with `edgec compile --backend tensorrt`")
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._buffers: dict[str, cuda.DeviceBuffer] = {}
        self._allocator = _output_allocator(trt, memory)

    @staticmethod
    def _import(flavour: str, built_with: str | None):
        trt = import_flavour(flavour, built_with)
        if trt.__version__ != built_with:
            raise ArtifactError(f"the plan was built with {LABELS[flavour]} {built_with}, and this host has "
                                f"{trt.__version__}; plans only load in the version that built them: recompile it "
                                f"here or install it: {install_hint(flavour, built_with)}")
        return trt

    def _check_validity(self, trt, plan: bytes, device: str, have: str) -> None:
        validity, diagnostics = self._runtime.get_engine_validity(plan)
        if validity == trt.EngineValidity.INVALID:
            flags = [name for name, flag in trt.EngineInvalidityDiagnostics.__members__.items()
                     if int(diagnostics) & int(flag)]
            raise ArtifactError(f"TensorRT-RTX says the plan cannot run on {device} (compute capability {have}): "
                                f"{', '.join(flags) or 'INVALID'}"
                                + (f" ({self._logger.errors[-1]})" if self._logger.errors else "")
                                + "; recompile it with `edgec compile --backend tensorrt`, or update the driver")

    def _refit(self, trt, onnx_bytes: bytes) -> None:
        """Put the weights back into a weight-stripped engine, from the graph it was built from."""
        refitter = trt.Refitter(self._engine, self._logger)
        if not trt.OnnxParserRefitter(refitter, self._logger).refit_from_bytes(onnx_bytes) \
                or not refitter.refit_cuda_engine():
            raise ArtifactError(f"TensorRT could not refit the weight-stripped plan from 'weights.onnx' "
                                f"({'; '.join(self._logger.errors[-2:]) or 'no message'}); recompile it")

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
            detail = "; ".join(self._logger.errors[-2:]) or "no message"
            raise EdgecError(f"TensorRT execute_async_v3 failed ({detail})")
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
        shapes = tuple(x.shape for x in inputs)
        if self._cache is not None and shapes not in self._shapes_seen:  # new shapes: new JIT kernels to keep
            self._shapes_seen.add(shapes)
            self._cache.save()
        return results


def _one_of(items: list[str]) -> str:
    return " or ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} or {items[-1]}"


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def open_executor(manifest: dict, files: dict[str, bytes], device: str, path: str | None = None) -> TensorRTExecutor:
    return TensorRTExecutor(manifest, files, device, path)
