"""ONNX bytes -> serialized TensorRT engine (plan), with the TensorRT 10/11 Python API.

The choices, in build order:
- Plugins first: `init_libnvinfer_plugins` registers EfficientNMS_TRT and friends, so the ONNX
  parser's fallback for unknown ops (op_type == plugin name) finds them.
- `create_network(1 << STRONGLY_TYPED)`: explicit batch is the only mode since TensorRT 10 (the
  EXPLICIT_BATCH flag is gone in 11); strongly typed makes the ONNX types the layer precisions, so
  fp16 comes from an fp16 graph and int8 from QDQ nodes (explicit quantization), never from builder
  precision flags, which TensorRT 11 removed. See options.py for the precision plan.
- Workspace: `set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)` caps tactic scratch memory,
  so the engine fits the target's memory budget rather than the build machine's.
- TF32 off for fp32, so fp32 artifacts compute in IEEE fp32 like the other backends.
- One optimization profile when any input has a symbolic dim (options.derive_profile).
- Timing cache: tactic timings are the slow part of a build; loading the previous cache makes a
  rebuild take seconds and choose the same tactics. A cache recorded on another GPU or TensorRT
  version is rejected by TensorRT (ignore_mismatch=False) and a fresh one is started.
- `build_serialized_network` returns the plan without keeping an engine in this process.
"""

from __future__ import annotations

from pathlib import Path

from edgec.errors import EdgecError, InternalError, UnsupportedError
from edgec.files import write_atomic

MISSING_TENSORRT = ("the tensorrt backend needs NVIDIA TensorRT, which is not importable here ({error}); install it "
                    "on a machine with an NVIDIA GPU and driver: pip install tensorrt --extra-index-url "
                    "https://pypi.nvidia.com")


def import_tensorrt():
    """The tensorrt module, or UnsupportedError (exit 2) naming TensorRT and how to get it."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as e:
        raise UnsupportedError(MISSING_TENSORRT.format(error=e)) from None
    return trt


def _logger(trt):
    """A TensorRT logger that keeps errors, so a failed parse or build ends in one readable line."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(" ".join(str(msg).split()))

    return Logger()


def build_plan(onnx_bytes: bytes, model_path: str, precision: str, profile: dict, options,
               timing_cache: Path | None) -> tuple[bytes, dict]:
    """Build and serialize the engine; returns (plan bytes, facts for the manifest's backend_config)."""
    trt = import_tensorrt()
    logger = _logger(trt)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    if builder is None:
        raise InternalError(f"TensorRT could not create a builder ({'; '.join(logger.errors) or 'no CUDA GPU?'})")
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        raise UnsupportedError(f"{model_path}: TensorRT's ONNX parser rejected the model: "
                               f"{_parser_error(parser)}; compile with --backend ort or --backend tvm")
    config = builder.create_builder_config()
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.optimization_level
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if profile:
        optimization_profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profile.items():
            optimization_profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(optimization_profile)
    cache_state = _use_timing_cache(config, timing_cache)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise InternalError(f"{model_path}: TensorRT failed to build the engine: "
                            f"{'; '.join(logger.errors[-3:]) or 'no message'}")
    if timing_cache is not None:
        data = bytes(config.get_timing_cache().serialize())
        write_atomic(timing_cache, lambda tmp: Path(tmp).write_bytes(data))
    facts = {"tensorrt_version": trt.__version__, "strongly_typed": True, "timing_cache": cache_state,
             "hardware_compatibility": "ampere_plus" if options.hardware_compatible else "none"}
    return bytes(plan), facts


def _use_timing_cache(config, path: Path | None) -> str:
    """Attach the timing cache at `path` (or a fresh one); returns 'loaded', 'new' or 'none'."""
    if path is None:
        return "none"
    if path.is_file():
        cache = config.create_timing_cache(path.read_bytes())
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return "loaded"
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return "new"


def _parser_error(parser) -> str:
    if parser.num_errors == 0:
        return "no details"
    error = parser.get_error(0)
    where = f"node '{error.node_name()}' (op {error.node_operator()}): " if error.node_name() else ""
    more = f" (and {parser.num_errors - 1} more)" if parser.num_errors > 1 else ""
    return f"{where}{' '.join(str(error.desc()).split())}{more}"


def check_build_gpu(target_sm: str, target_name: str, hardware_compatible: bool) -> str:
    """The local GPU's compute capability; UnsupportedError when TensorRT cannot build for the target here.

    TensorRT times kernels on the GPU it builds on and the plan is tied to that compute capability
    (except AMPERE_PLUS hardware-compatible plans, sm_80+ desktop/data-centre GPUs only), so unlike
    TVM it cannot cross-compile: the build machine must have the target's GPU.
    """
    from edgec.runtime.executors.tensorrt_executor import cuda_memory
    from edgec.targets import compute_capability

    want = compute_capability(target_sm)
    try:
        have = cuda_memory(0).compute_capability()
    except EdgecError as e:
        raise UnsupportedError(f"TensorRT builds on the GPU it targets, and {e}; run `edgec compile --backend "
                               f"tensorrt --target {target_name}` on a machine with an {target_sm} GPU") from None
    portable = hardware_compatible and float(want) >= 8.0 and float(have) >= 8.0 and "8.7" not in (want, have)
    if have != want and not portable:
        raise UnsupportedError(f"TensorRT plans run only on the compute capability they are built on: target "
                               f"'{target_name}' is {target_sm} ({want}) but this GPU is {have}; compile on an "
                               f"{target_sm} GPU, or for --target cuda")
    return have
