"""The CUDA runtime API through ctypes on libcudart: device buffers, copies and a stream for executors.

No torch, no cuda-python: a board needs only the CUDA runtime library, which every CUDA install has
(the toolkit's lib64, JetPack, or the `nvidia-cuda-runtime-cu12/13` wheel). It is looked up in
$EDGEC_CUDART (a path), the nvidia wheels on sys.path, the dynamic linker's path and /usr/local/cuda.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import sys

import numpy as np

from edgec.errors import EdgecError

_NAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so")
_NO_DEVICE = {35, 100}  # cudaErrorInsufficientDriver, cudaErrorNoDevice: a host without a usable GPU
_HOST_TO_DEVICE, _DEVICE_TO_HOST = 1, 2  # cudaMemcpyKind
_ATTR_MAJOR, _ATTR_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor / Minor
NO_GPU = "this host has no NVIDIA GPU (the CUDA runtime and nvidia-smi see none)"


def _candidates() -> list[str]:
    paths = [os.environ["EDGEC_CUDART"]] if os.environ.get("EDGEC_CUDART") else []
    for root in sys.path:
        for sub in ("nvidia/cuda_runtime/lib", "nvidia/cu13/lib", "nvidia/cu12/lib"):
            paths += sorted(glob.glob(os.path.join(root, sub, "libcudart.so*")), reverse=True)
    found = ctypes.util.find_library("cudart")
    paths += ([found] if found else []) + list(_NAMES)
    paths += [os.path.join(d, n) for d in ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib")
              for n in _NAMES]
    return list(dict.fromkeys(paths))


@functools.cache
def libcudart() -> ctypes.CDLL:
    """The CUDA runtime library; EdgecError naming what to install when there is none."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        return lib
    raise EdgecError("the CUDA runtime library (libcudart) was not found: install the CUDA toolkit or JetPack, or "
                     "`pip install nvidia-cuda-runtime-cu12`, or point EDGEC_CUDART at libcudart.so")


def _check(code: int, call: str) -> None:
    if code != 0:
        message = libcudart().cudaGetErrorString(code).decode(errors="replace")
        raise EdgecError(f"CUDA runtime call {call} failed: {message} (error {code})")


def device_count() -> int:
    """Usable CUDA devices: 0 on a host without a GPU or driver."""
    count = ctypes.c_int(0)
    code = libcudart().cudaGetDeviceCount(ctypes.byref(count))
    if code in _NO_DEVICE:
        return 0
    _check(code, "cudaGetDeviceCount")
    return count.value


def has_gpu() -> bool:
    """Whether this host has a usable NVIDIA GPU: the CUDA runtime says so, or, without libcudart, nvidia-smi."""
    try:
        return device_count() > 0
    except EdgecError:
        from edgec.targets import local_cuda_archs

        return bool(local_cuda_archs())


def compute_capability(index: int) -> str:
    """'9.0' for an H100: what TensorRT and nvidia-smi report."""
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(libcudart().cudaDeviceGetAttribute(ctypes.byref(major), _ATTR_MAJOR, index), "cudaDeviceGetAttribute")
    _check(libcudart().cudaDeviceGetAttribute(ctypes.byref(minor), _ATTR_MINOR, index), "cudaDeviceGetAttribute")
    return f"{major.value}.{minor.value}"


class DeviceBuffer:
    """`nbytes` of device memory, freed with the object."""

    def __init__(self, nbytes: int):
        self.nbytes = max(int(nbytes), 1)
        ptr = ctypes.c_void_p()
        _check(libcudart().cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(self.nbytes)), "cudaMalloc")
        self.ptr = int(ptr.value)

    def __del__(self):
        if getattr(self, "ptr", None):
            libcudart().cudaFree(ctypes.c_void_p(self.ptr))


class Device:
    """One GPU with a private stream: copies and kernels are ordered on it (TensorRT warns that enqueueV3
    on the legacy default stream costs extra synchronisation)."""

    def __init__(self, index: int):
        from edgec.targets import local_cuda_archs

        try:
            count = device_count()
        except EdgecError:  # no libcudart: say so only where there is a GPU to use it on
            if local_cuda_archs():
                raise
            count = 0
        if count == 0:
            raise EdgecError(NO_GPU)
        if index >= count:
            raise EdgecError(f"device 'cuda:{index}' does not exist: this host has {count} CUDA GPU(s)")
        self.index = index
        _check(libcudart().cudaSetDevice(index), "cudaSetDevice")
        stream = ctypes.c_void_p()
        _check(libcudart().cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        self.stream = int(stream.value or 0)

    def compute_capability(self) -> str:
        return compute_capability(self.index)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(nbytes)

    def to_device(self, buffer: DeviceBuffer, array: np.ndarray) -> None:
        if array.nbytes:
            _check(libcudart().cudaMemcpyAsync(ctypes.c_void_p(buffer.ptr), ctypes.c_void_p(array.ctypes.data),
                                               ctypes.c_size_t(array.nbytes), _HOST_TO_DEVICE,
                                               ctypes.c_void_p(self.stream)), "cudaMemcpyAsync")

    def to_host(self, buffer: DeviceBuffer, out: np.ndarray) -> None:
        if out.nbytes:
            _check(libcudart().cudaMemcpyAsync(ctypes.c_void_p(out.ctypes.data), ctypes.c_void_p(buffer.ptr),
                                               ctypes.c_size_t(out.nbytes), _DEVICE_TO_HOST,
                                               ctypes.c_void_p(self.stream)), "cudaMemcpyAsync")
            self.synchronize()  # `out` is read as soon as this returns

    def synchronize(self) -> None:
        _check(libcudart().cudaStreamSynchronize(ctypes.c_void_p(self.stream)), "cudaStreamSynchronize")
