"""Static post-training int8 quantization to QDQ form with onnxruntime.quantization.

Weights: int8, symmetric, per output channel (Conv/ConvTranspose/Gemm/MatMul). Activations: one
scale per tensor from the chosen calibrator (min-max, percentile, entropy) run on the calibration
inputs in a fixed order, so the same inputs give the same scales. The number format is an
`Int8Scheme` chosen for the backend and target (`scheme_for`). The result is standard ONNX
(QuantizeLinear/DequantizeLinear around float ops): ORT fuses each DQ->op->Q into an integer
kernel; other backends lower the same patterns.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgec.errors import EdgecError

METHODS = ("minmax", "percentile", "entropy")
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "MaxPool",
                 "AveragePool", "GlobalAveragePool", "Concat", "Sigmoid", "Flatten", "Reshape", "Transpose")


VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


@dataclass(frozen=True)
class Int8Scheme:
    """How tensors are stored as 8-bit integers.

    x86 integer kernels multiply uint8 activations by int8 weights (`vpmaddubsw`, VNNI's `vpdpbusd`),
    so activations are uint8 with a zero point (a ReLU's 0..max range keeps all 256 steps). Without
    VNNI, `vpmaddubsw` adds two u8 x s8 products in int16 and saturates beyond 32767 (2 x 255 x 127
    does): `reduce_range` keeps weights in -64..64 (2 x 255 x 64 = 32640) so it cannot. TensorRT accepts only
    zero point 0: symmetric int8 activations.
    """

    activations: str = "uint8"  # "uint8" (asymmetric) or "int8" (symmetric, zero point 0)
    reduce_range: bool = False  # 7-bit weights

    def describe(self) -> dict:
        weights = "int8 symmetric per-channel" + (", 7-bit range (no VNNI)" if self.reduce_range else "")
        activations = "uint8 per-tensor, asymmetric" if self.activations == "uint8" else "int8 per-tensor, symmetric"
        return {"weights": weights, "activations": activations}


def scheme_for(target, symmetric_activations: bool) -> Int8Scheme:
    """The scheme for a backend (`symmetric_activations`: it needs zero point 0) and an edgec Target."""
    if symmetric_activations:
        return Int8Scheme(activations="int8")
    no_vnni = target.arch == "x86_64" and not set(VNNI_FLAGS) & set(target.cpu_features)
    return Int8Scheme(activations="uint8", reduce_range=no_vnni)


def _reader(feeds: list[dict[str, np.ndarray]]):
    """A CalibrationDataReader over a fixed list of feeds (ORT calls get_next until None)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter(feeds)

        def get_next(self):
            return next(self._feeds, None)

    return Reader()


def quantize(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], method: str = "minmax",
             per_channel: bool = True, exclude: tuple[str, ...] = (), scheme: Int8Scheme = Int8Scheme()
             ) -> onnx.ModelProto:
    """The QDQ int8 version of `model` in `scheme`; nodes named in `exclude` stay float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise EdgecError(f"--calib-method '{method}': choose one of {', '.join(METHODS)}")
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    with tempfile.TemporaryDirectory(prefix="edgec-int8-") as tmp, _quiet():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        try:
            quantize_static(str(src), str(dst), _reader(feeds), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(QUANTIZED_OPS), per_channel=per_channel,
                            activation_type=QuantType.QUInt8 if scheme.activations == "uint8" else QuantType.QInt8,
                            weight_type=QuantType.QInt8, reduce_range=scheme.reduce_range,
                            nodes_to_exclude=list(exclude), calibrate_method=calibrate,
                            calibration_providers=["CPUExecutionProvider"],
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": scheme.activations == "int8",
                                           "CalibMovingAverage": False})
        except (ValueError, RuntimeError) as e:
            raise EdgecError(f"int8 calibration failed: {' '.join(str(e).split())[:300]}") from None
        return onnx.load(dst)


@contextlib.contextmanager
def _quiet():
    """Silence the calibrators' progress prints (stdout) and pre-processing advice (root logger)."""
    level = logging.root.level
    logging.root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.root.setLevel(level)


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes quantization wraps in QDQ (the candidates for keeping float)."""
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name]
