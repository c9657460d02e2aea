"""TensorRT build options, the precision plan and the optimization profiles, as plain data.

Nothing here imports TensorRT: these are the decisions a TensorRT expert makes before calling the
builder, kept testable on machines without a GPU.

Precision. edgec builds every network *strongly typed*: the ONNX graph's own tensor types decide
each layer's precision, TensorRT does not pick. TensorRT 10 deprecated weak typing (the FP16/INT8
builder flags and INT8 calibrators) and TensorRT 11 removed it, so this is the one path that works on
both, and it makes the artifact's precision exactly what the manifest says:
- fp32: the graph as exported; TF32 is switched off, so "fp32" means IEEE fp32 math (trtexec
  enables TF32 by default, which rounds matmul/conv inputs to 10 mantissa bits).
- fp16: the graph is converted to fp16 before parsing by edgec.quantize.fp16 (graph inputs/outputs
  and numerically sensitive ops stay fp32), unless it already carries fp16 compute.
- int8: explicit quantization. The graph must hold QuantizeLinear/DequantizeLinear pairs (from
  edgec's int8 quantization or onnxruntime.quantization in QDQ format); TensorRT fuses each
  DQ -> Conv/MatMul -> Q into an int8 kernel with the scales the QDQ nodes carry. There is no
  calibration step in TensorRT: calibration happened when the QDQ model was made. TensorRT's GPU
  int8 is symmetric, so every zero point must be int8 0 (checked here, before the build).

Dynamic shapes. An ONNX input dim that is a symbol (or unknown) becomes -1 in the TensorRT network,
and TensorRT needs one optimization profile giving its [min, opt, max]: kernels are tuned for `opt`
and valid for the whole range. Symbols are keyed by name, so two inputs sharing "batch" share one
range. A leading (batch) symbol defaults to min 1 / opt 1 / max `max_batch`; any other symbolic dim
(image size, sequence length) has no safe default and must be set in `profiles` or fixed with
`--input-shape`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from edgec.errors import UnsupportedError

NMS_MODES = ("efficient", "native")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class TensorRTOptions:
    """How to build the engine. The defaults suit a single-GPU edge deployment.

    workspace_mb: cap on TensorRT's scratch memory pool (MemoryPoolType.WORKSPACE). Tactics that need
        more are skipped, so a board with little memory gets an engine that fits; 0 keeps TensorRT's
        default (the whole device memory).
    max_batch / profiles: the optimization profile (see the module docstring); profiles maps a symbol
        name to (min, opt, max).
    optimization_level: builder_optimization_level 0-5 (TensorRT's default is 3; higher builds longer
        and may run faster).
    nms: "efficient" maps ONNX NonMaxSuppression to the EfficientNMS_TRT plugin with an adapter back to
        ONNX's selected_indices (edgec/backends/tensorrt/nms.py); "native" leaves it to the ONNX
        parser's INMSLayer.
    hardware_compatible: build with HardwareCompatibilityLevel.AMPERE_PLUS so the plan runs on any
        sm_80+ data-centre/desktop GPU (not Jetson), at some speed cost; otherwise a plan runs only on
        the compute capability it was built on.
    """

    workspace_mb: int = 1024
    max_batch: int = 32
    profiles: dict = field(default_factory=dict)
    optimization_level: int = 3
    nms: str = "efficient"
    hardware_compatible: bool = False

    def __post_init__(self):
        if self.nms not in NMS_MODES:
            raise UnsupportedError(f"TensorRT nms mode '{self.nms}' is unknown; choose one of {', '.join(NMS_MODES)}")
        if not 0 <= self.optimization_level <= 5:
            raise UnsupportedError(f"TensorRT optimization_level {self.optimization_level} is out of range 0-5")
        if self.workspace_mb < 0 or self.max_batch < 1:
            raise UnsupportedError("TensorRT workspace_mb must be >= 0 and max_batch >= 1")
        for symbol, dims in self.profiles.items():
            check_range(symbol, dims)

    def to_json(self) -> dict:
        return {"workspace_mb": self.workspace_mb, "max_batch": self.max_batch, "optimization_level":
                self.optimization_level, "nms": self.nms, "hardware_compatible": self.hardware_compatible,
                "profiles": {k: list(v) for k, v in sorted(self.profiles.items())}}


def check_range(symbol: str, dims) -> tuple[int, int, int]:
    """A (min, opt, max) triple with 1 <= min <= opt <= max, or UnsupportedError naming the symbol."""
    ok = isinstance(dims, (tuple, list)) and len(dims) == 3 and all(type(d) is int for d in dims)
    if not ok or not 1 <= dims[0] <= dims[1] <= dims[2]:
        raise UnsupportedError(f"TensorRT profile for '{symbol}' must be (min, opt, max) integers with "
                               f"1 <= min <= opt <= max, got {dims!r}")
    return tuple(dims)


def derive_profile(inputs: list[dict], options: TensorRTOptions,
                   model_path: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """{input name: (min shape, opt shape, max shape)} for the inputs with symbolic dims (manifest specs).

    Empty when every input is static: then no profile is needed and TensorRT builds for that shape.
    """
    profile = {}
    for spec in inputs:
        shape = spec["shape"]
        if all(isinstance(d, int) for d in shape):
            continue
        lo, mid, hi = [], [], []
        for axis, dim in enumerate(shape):
            if isinstance(dim, int):
                triple = (dim, dim, dim)
            else:
                key = dim if dim != "?" else f"{spec['name']}[{axis}]"
                if key in options.profiles:
                    triple = check_range(key, options.profiles[key])
                elif axis == 0:
                    triple = (1, 1, options.max_batch)
                else:
                    raise UnsupportedError(
                        f"{model_path}: input '{spec['name']}' dim {axis} is symbolic ('{dim}') and TensorRT needs "
                        f"its range; fix it with --input-shape {spec['name']}=... or set a TensorRT profile "
                        f"for '{key}'")
            for out, value in zip((lo, mid, hi), triple):
                out.append(value)
        profile[spec["name"]] = (tuple(lo), tuple(mid), tuple(hi))
    return profile


def has_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in QDQ_OPS and n.domain in ("", "ai.onnx") for n in model.graph.node)


def has_fp16(model: onnx.ModelProto) -> bool:
    """Whether the graph already computes in fp16 (fp16 weights or fp16 casts)."""
    half = onnx.TensorProto.FLOAT16
    return (any(t.data_type == half for t in model.graph.initializer)
            or any(n.op_type == "Cast" and any(a.name == "to" and a.i == half for a in n.attribute)
                   for n in model.graph.node))


def check_symmetric_qdq(model: onnx.ModelProto, model_path: str) -> None:
    """TensorRT's GPU int8 is symmetric: every Q/DQ zero point must be a constant int8 zero (or absent)."""
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    constants.update({n.output[0]: n.attribute[0].t for n in model.graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    for i, node in enumerate(model.graph.node):
        if node.op_type not in QDQ_OPS or len(node.input) < 3 or not node.input[2]:
            continue
        zero = constants.get(node.input[2])
        if zero is None or zero.data_type != onnx.TensorProto.INT8 or numpy_helper.to_array(zero).any():
            raise UnsupportedError(
                f"{model_path}: node '{node.name or f'#{i}'}' (op {node.op_type}) has zero point '{node.input[2]}' "
                "that is not a constant int8 0; TensorRT runs symmetric int8 only: quantize with symmetric "
                "activations and weights (onnxruntime extra_options ActivationSymmetric/WeightSymmetric=True)")


def precision_model(model: onnx.ModelProto, precision: str, model_path: str) -> onnx.ModelProto:
    """The graph TensorRT parses for `precision` (see the module docstring); refuses int8 without QDQ."""
    if precision == "int8":
        if not has_qdq(model):
            raise UnsupportedError(
                f"{model_path}: --precision int8 with TensorRT needs a QDQ model (explicit quantization: "
                "QuantizeLinear/DequantizeLinear nodes); TensorRT 11 removed calibrator-based INT8. Quantize the "
                "model first (onnxruntime.quantization.quantize_static with QuantFormat.QDQ) and compile that")
        check_symmetric_qdq(model, model_path)
        return model
    if precision == "fp16" and not has_fp16(model):
        from edgec.quantize.fp16 import to_fp16

        # edgec's one fp16 policy: I/O and sensitive ops (incl. NMS inputs) stay fp32; to_fp16 returns the
        # graph topologically sorted, as TensorRT's parser needs
        return to_fp16(model)
    return model
