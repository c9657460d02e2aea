"""The TensorRT backend's parts: build options and profiles, the NMS plugin mapping, the engine build.

`edgec.backends.tensorrt.backend` ties them together. Only `build` imports TensorRT; everything
else is plain Python over ONNX, so it is tested on machines that have no TensorRT.
"""
