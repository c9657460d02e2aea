"""TensorRT backend: optimized ONNX -> TensorRT engine plan, with full TensorRT or TensorRT-RTX.

TensorRT-RTX (`--target rtx`, and `cuda-sm_75|80|86|89|120|121` where full TensorRT is absent) builds here,
without a GPU: its plans embed kernels compiled for the named compute capabilities (and JIT-finished on the
user's GPU). Full TensorRT (Hopper, Jetson, ...) builds on the target GPU itself and is untested on this
project's machines. See docs/tensorrt.md.

The steps, each in its own module under edgec/backends/tensorrt/:
1. flavour.choose: which TensorRT builds the target, or why none can;
2. options.precision_model: fp16 graph conversion or the int8 QDQ check (strongly typed precision);
3. NMS: full TensorRT maps NonMaxSuppression to EfficientNMS_TRT (nms.py); TensorRT-RTX has no NMS kernel,
   so every NMS runs on the host (nms_unsupported, edgec/backends/nms_placement.py);
4. options.derive_profile: the optimization profile for symbolic dims;
5. build.build_plan: parse (errors per node), configure, build; layers.summarize: what the engine holds.
The payload is `model.plan` (and, weight-stripped, `weights.onnx` to refit it from); backend_config records
the flavour, version and compute capabilities the runtime checks before deserializing.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edgec.backends.base import Backend, CompileOptions, Payload
from edgec.backends.tensorrt import build, flavour, nms
from edgec.backends.tensorrt.options import TensorRTOptions, derive_profile, precision_model
from edgec.errors import EdgecError, UnsupportedError
from edgec.frontend.loader import io_spec
from edgec.runtime import cuda
from edgec.targets import Target, compute_capability, cuda_arch, host_arch, local_cuda_archs

NO_RTX_NMS = ("TensorRT-RTX has no NonMaxSuppression kernel (its INMSLayer has no runner and it ships no "
              "EfficientNMS_TRT plugin)")


def timing_cache_path(tuning_db: str | None, target: Target) -> Path | None:
    """The timing cache beside the tuning databases: DIR/tensorrt-sm_XX.timing.cache (one per GPU arch,
    since TensorRT rejects a cache recorded on another architecture)."""
    return Path(tuning_db) / f"tensorrt-{cuda_arch(target)}.timing.cache" if tuning_db else None


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    devices = ("cuda",)
    int8_symmetric_activations = True  # explicit quantization: TensorRT accepts only zero point 0
    weightless = True

    def __init__(self, options: TensorRTOptions | None = None):
        self.options = options or TensorRTOptions()

    def check(self, target: Target, options: CompileOptions) -> None:
        """Refuse before any work: no TensorRT for the target, or a request its flavour cannot build here."""
        super().check(target, options)
        chosen = flavour.choose(target)
        if chosen.name == "rtx":
            check_rtx(target, options)
            return
        if target.arch != host_arch():
            raise UnsupportedError(f"TensorRT cannot cross-compile: target '{target.name}' runs on {target.arch} "
                                   f"and this host is {host_arch()}; run `edgec compile --backend tensorrt` on the "
                                   "device itself (for Jetson, with JetPack's TensorRT)")
        check_build_gpu(cuda_arch(target), target.name, self.options.hardware_compatible)

    def compile(self, model: onnx.ModelProto, target: Target, options: CompileOptions) -> Payload:
        chosen = flavour.choose(target)
        graph = precision_model(model, options.precision, options.model_path)
        nms_records: list[dict] = []
        if chosen.name == "full" and self.options.nms == "efficient":
            graph, nms_records = nms.rewrite(graph)
        inputs, _ = io_spec(model)
        profile = derive_profile(inputs, self.options, options.model_path)
        timing_cache = timing_cache_path(options.tuning_db, target) if chosen.name == "full" else None
        built = build.build_plan(chosen, graph, options.model_path, options.precision, profile, self.options,
                                 options.weightless, timing_cache)
        config = dict(built.facts, options=self.options.to_json(), nms=nms_records,
                      profile={name: [list(s) for s in shapes] for name, shapes in profile.items()})
        files = {"model.plan": built.plan}
        if options.weightless:
            files["weights.onnx"] = graph.SerializeToString()  # what the runtime refits the stripped plan from
        return Payload(files, config, {"build_s": round(built.seconds, 3)})

    def required_cpu_features(self, target: Target) -> tuple[str, ...]:
        return ()  # no edgec-generated CPU code: TensorRT's own libraries run on the host

    nms_strategy = "EfficientNMS_TRT + adapter, or the native INMSLayer (backend_config 'nms')"

    def nms_unsupported(self, model: onnx.ModelProto, node: onnx.NodeProto, target: Target) -> str | None:
        """Full TensorRT maps every NMS itself (nms.py); TensorRT-RTX runs none."""
        return NO_RTX_NMS if flavour.choose(target).name == "rtx" else None


def check_rtx(target: Target, options: CompileOptions) -> None:
    """What TensorRT-RTX cannot do, measured with 1.7.1.116, refused before any work."""
    if options.precision == "int8":
        raise UnsupportedError(f"{options.model_path}: --precision int8 is not available with TensorRT-RTX: its ONNX "
                               "parser rejects the int32 bias DequantizeLinear nodes of edgec's QDQ models ('input "
                               "has type Int32 but must have type FP8, FP4, Int4, Int8, or UInt8'); use --precision "
                               "fp16, or --backend ort/tvm for int8")
    if options.tuning_db:
        raise UnsupportedError("--tuning-db: TensorRT-RTX has no timing cache (its timing-cache calls are no-ops "
                               "since 1.2); it JIT-compiles on the user's GPU and keeps that runtime cache beside the "
                               "artifact; compile without --tuning-db")
    if options.weightless and not local_cuda_archs():
        raise UnsupportedError(f"--weightless: TensorRT-RTX builds weight-stripped plans only on a machine with an "
                               f"NVIDIA GPU (without one its builder fails: 'MyelinCheckException: graph_jit.cpp: "
                               f"CHECK(status == CUDA_SUCCESS) failed'); compile target '{target.name}' without "
                               "--weightless here, or with it on a GPU machine")


def check_build_gpu(target_sm: str, target_name: str, hardware_compatible: bool) -> str:
    """The local GPU's compute capability; UnsupportedError when full TensorRT cannot build for the target here.

    Full TensorRT times kernels on the GPU it builds on and the plan is tied to that compute capability
    (except AMPERE_PLUS hardware-compatible plans, sm_80+ desktop/data-centre GPUs only), so unlike
    TensorRT-RTX it cannot cross-compile: the build machine must have the target's GPU.
    """
    want = compute_capability(target_sm)
    try:
        have = cuda.Device(0).compute_capability()
    except EdgecError as e:
        raise UnsupportedError(f"TensorRT builds on the GPU it targets, and {e}; run `edgec compile --backend "
                               f"tensorrt --target {target_name}` on a machine with an {target_sm} GPU") from None
    portable = hardware_compatible and float(want) >= 8.0 and float(have) >= 8.0 and "8.7" not in (want, have)
    if have != want and not portable:
        raise UnsupportedError(f"TensorRT plans run only on the compute capability they are built on: target "
                               f"'{target_name}' is {target_sm} ({want}) but this GPU is {have}; compile on an "
                               f"{target_sm} GPU, or for --target cuda")
    return have


BACKEND = TensorRTBackend()
