"""TensorRT backend: optimized ONNX -> TensorRT engine plan for `cuda`, `cuda-sm_XX` and `jetson-orin`.

Untested on this project's machines: they have no TensorRT (its libraries come from NVIDIA's index)
and no GPU. The code follows the TensorRT 10/11 Python API; see docs/tensorrt.md.

The steps, each in its own module under edgec/backends/tensorrt/:
1. options.precision_model: fp16 graph conversion or the int8 QDQ check (strongly typed precision);
2. nms.rewrite: NonMaxSuppression -> EfficientNMS_TRT plugin + adapter back to ONNX's output;
3. options.derive_profile: the optimization profile for symbolic dims;
4. build.build_plan: parse, configure, build, timing cache.
The payload is `model.plan`; backend_config records the TensorRT version and the GPU's compute
capability, which the runtime checks before deserializing (a plan loads in no other version and
runs on no other architecture).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edgec.backends.base import Backend, CompileOptions, Payload
from edgec.backends.tensorrt import build, nms
from edgec.backends.tensorrt.options import TensorRTOptions, derive_profile, precision_model
from edgec.errors import UnsupportedError
from edgec.frontend.loader import io_spec
from edgec.targets import Target, compute_capability, cuda_arch, host_arch


def timing_cache_path(tuning_db: str | None, target: Target) -> Path | None:
    """The timing cache beside the tuning databases: DIR/tensorrt-sm_XX.timing.cache (one per GPU arch,
    since TensorRT rejects a cache recorded on another architecture)."""
    return Path(tuning_db) / f"tensorrt-{cuda_arch(target)}.timing.cache" if tuning_db else None


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    devices = ("cuda",)
    int8_symmetric_activations = True  # explicit quantization: TensorRT accepts only zero point 0

    def __init__(self, options: TensorRTOptions | None = None):
        self.options = options or TensorRTOptions()

    def check(self, target: Target, options: CompileOptions) -> None:
        """Refuse before any work: no TensorRT, a cross-build, or a GPU of another architecture."""
        super().check(target, options)
        build.import_tensorrt()
        if target.arch != host_arch():
            raise UnsupportedError(f"TensorRT cannot cross-compile: target '{target.name}' runs on {target.arch} "
                                   f"and this host is {host_arch()}; run `edgec compile --backend tensorrt` on the "
                                   "device itself (for Jetson, with JetPack's TensorRT)")
        build.check_build_gpu(cuda_arch(target), target.name, self.options.hardware_compatible)

    def compile(self, model: onnx.ModelProto, target: Target, options: CompileOptions) -> Payload:
        graph = precision_model(model, options.precision, options.model_path)
        nms_records: list[dict] = []
        if self.options.nms == "efficient":
            graph, nms_records = nms.rewrite(graph)
        inputs, _ = io_spec(model)
        profile = derive_profile(inputs, self.options, options.model_path)
        plan, facts = build.build_plan(graph.SerializeToString(), options.model_path, options.precision, profile,
                                       self.options, timing_cache_path(options.tuning_db, target))
        config = dict(facts, gpu_arch=cuda_arch(target), compute_capability=compute_capability(cuda_arch(target)),
                      options=self.options.to_json(), nms=nms_records,
                      profile={name: [list(s) for s in shapes] for name, shapes in profile.items()})
        return Payload({"model.plan": plan}, config)

    def required_cpu_features(self, target: Target) -> tuple[str, ...]:
        return ()  # no edgec-generated CPU code: TensorRT's own libraries run on the host

    nms_strategy = "EfficientNMS_TRT + adapter, or the native INMSLayer (backend_config 'nms')"

    def nms_unsupported(self, model: onnx.ModelProto, node: onnx.NodeProto) -> str | None:
        return None  # compile() maps it: edgec/backends/tensorrt/nms.py


BACKEND = TensorRTBackend()
