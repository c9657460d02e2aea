"""ONNX Runtime as a CPU backend: the payload is the optimized ONNX plus session options."""

from __future__ import annotations

import json

import onnx

from edgec.backends.base import Backend, CompileOptions, Payload
from edgec.errors import EdgecError
from edgec.targets import Target

SESSION_CONFIG = {"graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_num_threads": 0}


class OrtBackend(Backend):
    """fp32 as given; fp16 converted here (I/O and sensitive ops kept fp32); int8 arrives as QDQ, which
    ORT fuses into integer kernels (DQ -> Conv/MatMul -> Q becomes QLinearConv/QLinearMatMul)."""

    name = "ort"
    precisions = ("fp32", "fp16", "int8")

    def compile(self, model: onnx.ModelProto, target: Target, options: CompileOptions) -> Payload:
        import onnxruntime as ort

        if options.precision == "fp16":
            from edgec.quantize.fp16 import to_fp16

            model = to_fp16(model)
        data = model.SerializeToString(deterministic=True)
        options.stage("session")
        try:  # build a session now, so an unsupported op fails at compile time, not on the board
            quiet = ort.SessionOptions()
            quiet.log_severity_level = 4  # fatal only: the failure below is the one message the user sees
            ort.InferenceSession(data, quiet, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
            message = " ".join(str(e).split())
            raise EdgecError(f"{options.model_path}: ONNX Runtime cannot load the model: {message}") from None
        config = json.dumps(SESSION_CONFIG, sort_keys=True).encode()
        return Payload({"model.onnx": data, "session.json": config}, {"session": SESSION_CONFIG})

    def required_cpu_features(self, target: Target) -> tuple[str, ...]:
        return ()  # ONNX Runtime picks its kernels for the executing CPU at run time

    nms_strategy = "onnxruntime NonMaxSuppression kernel"

    def nms_unsupported(self, model: onnx.ModelProto, node: onnx.NodeProto, target: Target) -> str | None:
        return None


BACKEND = OrtBackend()
