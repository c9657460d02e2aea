"""edgec: compile ONNX models for CPUs, CUDA GPUs and embedded boards, with measured reports."""

__version__ = "0.1.0"
