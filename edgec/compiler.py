"""`edgec compile` as a library call: load -> passes -> backend -> verified, deterministic artifact."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx

from edgec import __version__
from edgec.backends import CompileOptions, get_backend, nms_placement
from edgec.errors import EdgecError
from edgec.frontend.loader import io_spec, load_model
from edgec.passes import DEFAULT_PIPELINE, PassContext, run_pipeline
from edgec.quantize.int8 import scheme_for
from edgec.quantize.pipeline import Int8Options, quantize_int8
from edgec.runtime.artifact import write_artifact
from edgec.targets import resolve_target


@dataclass
class CompileResult:
    path: Path
    manifest: dict
    seconds: float  # "compile s" everywhere: model load to artifact written, toolchain imports excluded
    pass_records: list
    stages: dict = field(default_factory=dict)  # {stage: seconds}, in order
    toolchain_s: float = 0.0  # importing TVM / ONNX Runtime / TensorRT and detecting the host: once per process
    stats: dict = field(default_factory=dict)  # the backend's measurements (TensorRT's build_s), not in the artifact


class Stages:
    """Wall time per compile stage; `stage(name)` starts one (ending the one before) and tells `progress`."""

    def __init__(self, progress=None):
        self.seconds: dict[str, float] = {}
        self._progress = progress or (lambda name: None)
        self._current: str | None = None
        self._since = 0.0

    def __call__(self, name: str | None) -> None:
        now = time.perf_counter()
        if self._current is not None:
            self.seconds[self._current] = self.seconds.get(self._current, 0.0) + now - self._since
        self._current, self._since = name, now
        if name is not None:
            self._progress(name)


def toolchain_versions() -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"tvm": version("apache-tvm"), "tvm_ffi": version("apache-tvm-ffi"), "onnx": version("onnx"),
            "onnxruntime": version("onnxruntime"), "tensorrt": version("tensorrt"),
            "tensorrt_rtx": version("tensorrt-rtx-cu13-bindings")}


def compile_model(model_path: str | os.PathLike, target: str, output: str | os.PathLike, backend: str = "tvm",
                  precision: str = "fp32", input_shapes: dict | None = None, passes=DEFAULT_PIPELINE,
                  tuning_db: str | None = None, int8: Int8Options | None = None, validate: bool = True,
                  nms: str = "auto", weightless: bool = False, winograd: bool = True, progress=None) -> CompileResult:
    """Compile an ONNX file into a `.edgec` artifact at `output` (written atomically).

    int8 quantizes the optimized graph to QDQ form here, before the backend, so every backend gets
    the same calibrated model; fp16 conversion is the backend's own step (each does it its way).
    nms "auto" runs NonMaxSuppression in the backend where it can, "host" always in the runtime (numpy).
    weightless builds a weight-stripped engine (tensorrt), refitted from the artifact's ONNX weights at load.
    winograd=False keeps TVM's CPU 3x3 convs direct (Winograd stores 16/9 to 4x their weight bytes).
    validate checks every graph pass's outputs against the model before it with ONNX Runtime.
    progress(stage) is called as each stage starts (toolchain, load, passes, quantize, nms, the backend's
    name, then its own: import, schedule, build, link for TVM; then package); their times are in the result."""
    stage = Stages(progress)
    stage("toolchain")
    model_path = str(model_path)
    chosen = get_backend(backend)
    chosen.import_toolchain()
    tgt = resolve_target(target)
    options = CompileOptions(precision=precision, tuning_db=tuning_db, model_path=model_path, weightless=weightless,
                             winograd=winograd, progress=stage)
    chosen.check(tgt, options)
    stage("load")
    source_sha = hashlib.sha256(Path(model_path).read_bytes()).hexdigest() if Path(model_path).is_file() else None
    graph = load_model(model_path, input_shapes)
    stage("passes")
    graph, records = run_pipeline(graph, passes, PassContext(model_path=model_path, validate=validate))
    quantization = None
    if precision == "int8":
        stage("quantize")
        scheme = scheme_for(tgt, chosen.int8_symmetric_activations)
        measure = _host_backend(chosen)  # --max-accuracy-drop measures with the backend being compiled
        graph, quantization = quantize_int8(graph, int8 or Int8Options(), scheme, host_runner(measure, model_path),
                                            f"{measure} (this host's CPU)")
    inputs, outputs = io_spec(graph)
    stage("nms")
    graph, nms_plan = nms_placement.plan(graph, chosen, tgt, on_host=nms == "host")  # cut out for the runtime
    stage(chosen.name)  # the backend's own stages follow, where it reports them
    payload = chosen.compile(graph, tgt, options)
    manifest = {
        "edgec_version": __version__,
        "backend": chosen.name,
        "backend_config": payload.config,
        "target": dict(tgt.to_json(), cpu_features=list(chosen.required_cpu_features(tgt))),
        "precision": precision,
        "quantization": quantization,
        "inputs": inputs,
        "outputs": outputs,
        "source_model_sha256": source_sha,
        "passes": [r.name for r in records],
        "toolchain": toolchain_versions(),
    }
    if nms_plan is not None:
        manifest["nms"] = nms_plan
        manifest["passes"] += ["nms_host_split"] if nms_plan["host"] else []
    stage("package")
    written = write_artifact(output, manifest, payload.files)  # no re-read and re-hash of the payload
    stage(None)
    times = {name: round(t, 3) for name, t in stage.seconds.items()}
    toolchain = times.pop("toolchain", 0.0)
    return CompileResult(Path(output), written, sum(times.values()), records, times, toolchain, payload.stats)


def _host_backend(backend) -> str:
    """`backend`'s name where it compiles for this host's CPU, else ONNX Runtime's (TensorRT here)."""
    try:
        backend.check(resolve_target("cpu"), CompileOptions())
    except EdgecError:
        return "ort"
    return backend.name


def run_on_host(model: onnx.ModelProto, backend: str, feeds: list[dict], model_path: str = "model.onnx",
                precision: str = "fp32") -> list[dict[str, np.ndarray]]:
    """Compile `model` as it is (no graph passes) for this host's CPU with `backend`, run it on each feed."""
    import edgec.runtime as rt

    with tempfile.TemporaryDirectory(prefix="edgec-run-") as tmp:
        src = Path(tmp) / (Path(model_path).stem + ".onnx")
        onnx.save(model, src)
        artifact = compile_model(src, "cpu", Path(tmp) / "model.edgec", backend=backend, precision=precision,
                                 passes=(), validate=False).path
        module = rt.load(artifact)
        return [module.run(f) for f in feeds]


def host_runner(backend: str, model_path: str = "model.onnx"):
    """`run(model, feeds)` for edgec.quantize: `run_on_host` with `backend`."""
    return lambda model, feeds: run_on_host(model, backend, feeds, model_path)
