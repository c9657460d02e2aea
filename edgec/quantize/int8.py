"""Static post-training int8 quantization to QDQ form with onnxruntime.quantization.

Weights: int8, symmetric, per output channel (Conv/ConvTranspose/Gemm/MatMul). Activations: int8
(asymmetric unless asked otherwise), one scale per tensor from the chosen calibrator (min-max, percentile, entropy) run on
the calibration inputs in a fixed order, so the same inputs give the same scales. The result is
standard ONNX (QuantizeLinear/DequantizeLinear around float ops): ORT fuses each DQ->op->Q into an
integer kernel; other backends lower the same patterns.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgec.errors import EdgecError

METHODS = ("minmax", "percentile", "entropy")
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "MaxPool",
                 "AveragePool", "GlobalAveragePool", "Concat", "Sigmoid", "Flatten", "Reshape", "Transpose")


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
             per_channel: bool = True, exclude: tuple[str, ...] = (), symmetric_activations: bool = False
             ) -> onnx.ModelProto:
    """The QDQ int8 version of `model`; nodes named in `exclude` stay float. Asymmetric activations by
    default (a sigmoid's 0..1 range keeps all 256 steps); symmetric where a backend needs zero point 0."""
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
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude), calibrate_method=calibrate,
                            calibration_providers=["CPUExecutionProvider"],
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": symmetric_activations,
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
