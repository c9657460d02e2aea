"""Getting models in: PyTorch export, ONNX loading and validation, inspection."""
