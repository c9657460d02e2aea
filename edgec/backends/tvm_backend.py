"""TVM (Relax) backend: ONNX -> Relax -> compiled VM executable exported as one shared library."""

from __future__ import annotations

import os
import tempfile

import onnx

from edgec.backends.base import Backend, CompileOptions, Payload
from edgec.errors import EdgecError, InternalError, UnsupportedError
from edgec.frontend.loader import graph_inputs, node_label
from edgec.targets import Target

os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")


class TvmBackend(Backend):
    name = "tvm"

    def compile(self, model: onnx.ModelProto, target: Target, options: CompileOptions) -> Payload:
        import tvm
        from tvm.relax.frontend.onnx import from_onnx

        check_ops_supported(model, options.model_path)
        dtypes = {v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
                  for v in graph_inputs(model)}
        try:
            mod = from_onnx(model, dtype_dict=dtypes, keep_params_in_input=False)
        except Exception as e:  # TVM raises TVMError/ValueError/... from deep in the importer
            raise EdgecError(f"{options.model_path}: TVM could not import the model: {_error_summary(e)}; "
                             "try --backend ort") from None
        try:
            executable = tvm.compile(mod, target=tvm.target.Target(target.tvm))
            with tempfile.TemporaryDirectory(prefix="edgec-tvm-") as tmp:
                lib_path = os.path.join(tmp, "model.so")
                executable.export_library(lib_path)
                with open(lib_path, "rb") as f:
                    library = f.read()
        except Exception as e:
            raise InternalError(f"{options.model_path}: TVM failed to compile for target '{target.name}': "
                                f"{_error_summary(e)}") from None
        return Payload({"model.so": library}, {"entry": "main", "executor": "relax.vm"})


def check_ops_supported(model: onnx.ModelProto, model_path: str) -> None:
    """Fail before import, naming the first node whose op TVM's ONNX importer lacks."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    supported = _get_convert_map()
    for i, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in supported:
            raise UnsupportedError(f"{model_path}: {node_label(node, i)} is not supported by the tvm backend "
                                   "(TVM's ONNX importer has no converter for it); compile with --backend ort")


def _error_summary(e: Exception) -> str:
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


BACKEND = TvmBackend()
