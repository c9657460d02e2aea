"""Reduced precision: fp16 conversion and calibrated int8 (QDQ) quantization, with accuracy-aware fallback."""
