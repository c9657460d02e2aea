"""TVM (Relax) backend: ONNX -> Relax -> compiled VM executable exported as one shared library."""

from __future__ import annotations

import contextlib
import os
import tempfile

import onnx

from edgec.backends.base import Backend, CompileOptions, Payload
from edgec.backends.tvm import cubin, expand_functions, link, lower_rnn, pipelines
from edgec.backends.tvm.tuning.database.store import NO_DATABASE
from edgec.errors import EdgecError, InternalError, UnsupportedError
from edgec.frontend.loader import graph_inputs, node_label
from edgec.passes import PassContext, get_pass
from edgec.targets import Target, cuda_arch
from edgec.tvm_process import prepare_tvm


class TvmBackend(Backend):
    """CPU (x86-64, aarch64 cross) with edgec's schedule rules, fp32/fp16/bf16/int8; CUDA (incl. Jetson) fp32/fp16
    with convs as implicit GEMMs (fp16 on the tensor cores) and dlight for the rest (`pipelines.cuda`). int8 lowers
    the QDQ model's conv/matmul to integer kernels (`rewrites.integer_qdq`) and runs its max pools on the
    8-bit values (`rewrites.quantized_pool`); fp16 on a CPU is ToMixedPrecision, bf16 gives conv/matmul bf16 operands
    (`rewrites.bfloat16`, AVX512_BF16 dot products where the target has them; see `pipelines.cpu`)."""

    name = "tvm"
    precisions = ("fp32", "fp16", "bf16", "int8")
    devices = ("cpu", "cuda")
    nms_strategy = "relax.vision.all_class_non_max_suppression (rows trimmed to the valid count)"

    def nms_unsupported(self, model: onnx.ModelProto, node: onnx.NodeProto, target: Target) -> str | None:
        return nms_unsupported(model, node)

    def check(self, target: Target, options: CompileOptions) -> None:
        super().check(target, options)
        if options.precision == "int8" and target.device != "cpu":
            raise UnsupportedError(f"backend 'tvm' compiles int8 for CPU targets only; for target '{target.name}' "
                                   "use fp32/fp16, or --backend tensorrt --precision int8")
        if options.precision == "bf16" and target.device != "cpu":
            raise UnsupportedError(f"backend 'tvm' compiles bf16 for CPU targets only; for target '{target.name}' "
                                   "use --precision fp16 (the GPU's tensor cores)")
        if target.device == "cuda":
            if not target.tvm:
                raise UnsupportedError(f"backend 'tvm' cannot compile for target '{target.name}' "
                                       f"({target.description}): TVM builds for one GPU architecture; use --backend "
                                       "tensorrt, or --target cuda-sm_XX for tvm")
            if options.tuning_db not in (None, NO_DATABASE):
                raise UnsupportedError(f"--tuning-db: backend 'tvm' applies tuning databases to CPU targets only, "
                                       f"and '{target.name}' is a CUDA target; compile without --tuning-db")
            cubin.nvcc_version(target)  # raises naming nvcc when it is missing

    def import_toolchain(self) -> None:
        super().import_toolchain()
        prepare_tvm()
        import tvm.relax.frontend.onnx  # noqa: F401  (TVM and its ONNX importer: the slow part)

    def compile(self, model: onnx.ModelProto, target: Target, options: CompileOptions) -> Payload:
        prepare_tvm()
        import tvm  # noqa: E402 - after prepare_tvm

        link_options = link.export_options(target)  # first: a missing cross linker fails before the slow work
        config = {"entry": "main", "executor": "relax.vm"}
        if target.device == "cuda":  # kernels as a cubin for the target's SM (nvcc), not source
            config["cuda"] = {"arch": cuda_arch(target), "kernels": "cubin", "nvcc": cubin.nvcc_version(target)}
            link_options["fpack_imports"] = cubin.fpack_imports(target)
        else:
            config["winograd"] = options.winograd  # 3x3 stride-1 convs as Winograd convs (`rewrites.winograd`)
        tuned = tuned_kernels(options.tuning_db, target)
        options.stage("import")
        mod, lowered = import_relax(model, options.model_path)
        options.stage("schedule")
        try:
            with cubin.nvcc_hook(target) if target.device == "cuda" else contextlib.nullcontext():
                executable = tvm.compile(mod, target=tvm.target.Target(target.tvm),
                                         relax_pipeline=pipelines.relax_pipeline(target, options, tuned),
                                         tir_pipeline=pipelines.tir_pipeline(target))
            options.stage("link")
            with tempfile.TemporaryDirectory(prefix="edgec-tvm-") as tmp:
                lib_path = os.path.join(tmp, "model.so")
                executable.export_library(lib_path, **link_options)
                with open(lib_path, "rb") as f:
                    library = f.read()
        except EdgecError:
            raise
        except Exception as e:
            raise InternalError(f"{options.model_path}: TVM failed to compile for target '{target.name}': "
                                f"{_error_summary(e)}") from None
        if tuned is not None:
            config["tuning"] = tuned.summary()
        return Payload({"model.so": library}, dict(config, lowered=lowered))


def import_relax(model: onnx.ModelProto, model_path: str):
    """(Relax IRModule, names of the lowering passes run first): TVM's ONNX import, as compile and tune do it."""
    prepare_tvm()
    from tvm.relax.frontend.onnx import from_onnx

    lowered = []
    if lower_rnn.has_recurrent_ops(model):  # TVM's importer has no RNN/GRU/LSTM converter
        model = lower_rnn.run(model, PassContext(model_path=model_path))
        lowered.append("lower_rnn")
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    supported = _get_convert_map()
    model, expanded = expand_functions.run(model, supported)  # ops the spec defines as functions
    if expanded:  # their bodies' Constant nodes (value_ints ...) become weights, what TVM's importer takes
        model = get_pass("fold_constants")(model, PassContext(model_path=model_path))
        lowered += [f"expand_functions:{op}" for op in expanded]
    check_ops_supported(model, model_path, supported)
    dtypes = {v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
              for v in graph_inputs(model)}
    try:
        return from_onnx(model, dtype_dict=dtypes, keep_params_in_input=False), lowered
    except Exception as e:  # TVM raises TVMError/ValueError/... from deep in the importer
        raise EdgecError(f"{model_path}: TVM could not import the model: {_error_summary(e)}; "
                         "try --backend ort, or --backend auto to keep the fastest backend that compiles it") from None


def tuned_kernels(tuning_db: str | None, target: Target):
    """The tuning database's kernels for target (`tuning.database.apply.TunedKernels`): tuning_db's, else the
    one shipped in the repository's tuning/ for this target if any; None for "none" or when there is none."""
    from edgec.backends.tvm.tuning.database.apply import TunedKernels
    from edgec.backends.tvm.tuning.database.store import SHIPPED, Store

    if tuning_db == NO_DATABASE or target.device == "cuda":
        return None
    if tuning_db is None:
        shipped = Store(SHIPPED, target).exists()
        return TunedKernels.load(str(SHIPPED), target, label="tuning/ (shipped)") if shipped else None
    return TunedKernels.load(tuning_db, target)


def nms_unsupported(model: onnx.ModelProto, node: onnx.NodeProto) -> str | None:
    """TVM's importer reads max_output_boxes_per_class / iou_threshold / score_threshold only as constants
    (anything else silently becomes 0 / 0.5 / 0.0), and types its output with the padded row count
    B * C * N while the kernel returns the valid rows: right for a graph output, wrong for a consumer."""
    from edgec.backends.nms_placement import constant_inputs, only_graph_output

    consts = constant_inputs(model)
    for i, what in ((2, "max_output_boxes_per_class"), (3, "iou_threshold"), (4, "score_threshold")):
        if len(node.input) <= i or node.input[i] not in consts:
            return f"TVM's NMS importer needs {what} as a constant input"
    return only_graph_output(model, node)


def check_ops_supported(model: onnx.ModelProto, model_path: str, supported) -> None:
    """Fail before import, naming the first node whose op is not in `supported` (TVM's ONNX converters)."""
    opsets = {op.domain or "ai.onnx": op.version for op in model.opset_import}
    for i, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in supported:
            opset = f"{node.domain or 'ai.onnx'} opset {opsets.get(node.domain or 'ai.onnx', '?')}"
            raise UnsupportedError(f"{model_path}: {node_label(node, i)}, {opset}, is not supported by the tvm "
                                   "backend (TVM's ONNX importer has no converter for it); compile with --backend "
                                   "ort, or --backend auto to keep the fastest backend that compiles it")


def _error_summary(e: Exception) -> str:
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


BACKEND = TvmBackend()
