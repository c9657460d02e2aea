"""ONNX graph -> serialized TensorRT engine (plan), with full TensorRT 10/11 or TensorRT-RTX (flavour.py).

The choices, in build order:
- Plugins (full TensorRT only): `init_libnvinfer_plugins` registers EfficientNMS_TRT and friends, so the
  ONNX parser's fallback for unknown ops (op_type == plugin name) finds them. TensorRT-RTX ships no plugin
  library.
- `create_network(1 << STRONGLY_TYPED)`: explicit batch is the only mode since TensorRT 10; strongly typed
  makes the ONNX types the layer precisions, so fp16 comes from an fp16 graph and int8 from QDQ nodes,
  never from builder precision flags (TensorRT 11 removed them; TensorRT-RTX never had them and is always
  strongly typed, the flag being accepted and ignored).
- Every parse error is reported, per node (diagnostics.py); nothing is built after one.
- Workspace: `set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)` caps tactic scratch memory, so the
  engine fits the target's memory budget rather than the build machine's.
- TF32 off for fp32, so fp32 artifacts compute in IEEE fp32 like the other backends.
- ProfilingVerbosity.DETAILED: the build log then lists every engine layer with the ONNX nodes it
  computes (layers.py), and the plan keeps those names for TensorRT's inspector.
- GPUs: TensorRT-RTX compiles for the compute capabilities named (`set_compute_capability`), with no GPU
  needed; full TensorRT builds for the GPU it runs on (or AMPERE_PLUS hardware compatibility).
- One optimization profile when any input has a symbolic dim (options.derive_profile).
- Weight-stripped plans: STRIP_PLAN + REFIT_IDENTICAL; the runtime refits them from the ONNX graph.
- Timing cache (full TensorRT only; TensorRT-RTX's timing-cache calls are no-ops): tactic timings are the
  slow part of a build; loading the previous cache makes a rebuild take seconds and choose the same
  tactics. A cache recorded on another GPU or version is rejected (ignore_mismatch=False), a fresh one used.
- `build_serialized_network` returns the plan without keeping an engine (or needing a GPU, for RTX).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgec.backends.tensorrt import diagnostics, layers
from edgec.backends.tensorrt.flavour import Flavour
from edgec.errors import InternalError
from edgec.files import write_atomic
from edgec.runtime.tensorrt_plan import read_header
from edgec.targets import compute_capability


@dataclass
class Built:
    plan: bytes
    facts: dict  # for the manifest's backend_config
    seconds: float  # build_serialized_network's wall time: measured, not recorded in the artifact


def _logger(trt):
    """A TensorRT logger that keeps errors (for one readable line) and the engine's layer list."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.layers: str | None = None

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                if "Thread context has not been set" not in msg:  # TensorRT-RTX's noise outside a builder call
                    self.errors.append(" ".join(str(msg).split()))
            elif severity == trt.ILogger.Severity.VERBOSE and msg.startswith(layers.LOG_PREFIX):
                self.layers = msg

    return Logger()


def build_plan(flavour: Flavour, model: onnx.ModelProto, model_path: str, precision: str, profile: dict, options,
               weightless: bool, timing_cache: Path | None) -> Built:
    """Parse, configure and build `model`; UnsupportedError naming the node TensorRT rejected."""
    trt, toolkit = flavour.module, f"{flavour.label} {flavour.version}"
    logger = _logger(trt)
    if flavour.name == "full":
        trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    if builder is None:
        raise InternalError(f"{toolkit} could not create a builder ({'; '.join(logger.errors) or 'no CUDA GPU?'})")
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        raise diagnostics.parse_failure(parser, model, model_path, toolkit)
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.optimization_level
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    if flavour.name == "rtx":
        _set_compute_capabilities(trt, config, flavour.archs)
    elif options.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if weightless:
        config.set_flag(trt.BuilderFlag.STRIP_PLAN)
        config.set_flag(trt.BuilderFlag.REFIT_IDENTICAL)
    if profile:
        optimization_profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profile.items():
            optimization_profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(optimization_profile)
    cache_state = _use_timing_cache(config, timing_cache)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise diagnostics.build_failure(logger.errors, model, model_path, toolkit)
    plan = bytes(serialized)
    if timing_cache is not None:
        data = bytes(config.get_timing_cache().serialize())
        write_atomic(timing_cache, lambda tmp: Path(tmp).write_bytes(data))
    return Built(plan, _facts(flavour, plan, logger.layers, model, precision, weightless, cache_state, options),
                 seconds)


def _set_compute_capabilities(trt, config, archs: tuple[str, ...]) -> None:
    config.num_compute_capabilities = len(archs)
    for i, sm in enumerate(archs):
        if not config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + sm.removeprefix("sm_")), i):
            raise InternalError(f"TensorRT-RTX refused compute capability {sm} (set_compute_capability)")


def _facts(flavour: Flavour, plan: bytes, layer_log: str | None, model: onnx.ModelProto, precision: str,
           weightless: bool, cache_state: str, options) -> dict:
    ccs = [compute_capability(sm) for sm in flavour.archs]
    plan_facts = {"bytes": len(plan), "sha256": hashlib.sha256(plan).hexdigest()}
    if flavour.name == "rtx":
        header = read_header(plan)
        ccs = header.compute_capabilities
        plan_facts.update(header=header.to_json())
    facts = {"tensorrt": {"flavour": flavour.name, "version": flavour.version, "compute_capabilities": ccs},
             "plan": plan_facts, "engine": layers.summarize(layer_log, model), "strongly_typed": True,
             "tf32": precision != "fp32", "weights": "stripped" if weightless else "embedded"}
    if flavour.name == "full":
        facts.update(timing_cache=cache_state,
                     hardware_compatibility="ampere_plus" if options.hardware_compatible else "none")
    return facts


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
