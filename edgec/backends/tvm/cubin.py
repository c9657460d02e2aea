"""Ahead-of-time CUDA kernels: nvcc compiles TVM's generated CUDA source into a cubin for the target's SM.

TVM 0.27 compiles CUDA kernels with its `tvm_callback_cuda_compile` hook when one is registered (its own
uses NVRTC, needs the cuda-bindings package, and is registered by importing tvm.support.nvcc), else it
leaves them as source in the compiled module (`fmt "cuda"`), compiled on the device at load time. edgec
makes both ways nvcc's: during a CUDA compile its own hook answers with nvcc's cubin (`nvcc_hook`), and
export_library's `fpack_imports` hook replaces any `cuda` module's source left with nvcc's cubin for the
target arch (the function table kept, `fmt "cubin"`), which the CUDA runtime hands straight to
`cuModuleLoadData`. So an sm_80 and an sm_90 artifact carry different machine code, the same on every
host, and loading needs no compiler.

Library binary layout (tvm_ffi `ProcessLibraryBin`): <nbytes u64> <indptr vec<u64>> <children vec<u64>>
then per module <kind str> [<payload bytes>] ("_lib" has none); a `cuda` payload is
<fmt str> <function table> <data str>. Strings, bytes and vectors are u64-length-prefixed.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from contextlib import contextmanager
from functools import lru_cache

from edgec.errors import InternalError, UnsupportedError
from edgec.targets import Target, cuda_arch

_U64 = struct.Struct("<Q")


def nvcc_version(target: Target) -> str:
    """nvcc's version ("13.0.88"); UnsupportedError naming nvcc when it is not on PATH."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise UnsupportedError(f"target '{target.name}': nvcc (the CUDA toolkit's compiler) is not on PATH; edgec "
                               "compiles CUDA kernels ahead of time with it: install the CUDA toolkit or add its "
                               "bin directory (e.g. /usr/local/cuda/bin) to PATH")
    return _version(nvcc)


@lru_cache
def _version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"release [\d.]+, V([\d.]+)", out)
    return match.group(1) if match else out.strip().splitlines()[-1]


def compile_cubin(source: str, target: Target) -> bytes:
    """nvcc's cubin for the target's arch, with the flags TVM's own nvcc path uses."""
    import tvm
    from tvm.support import nvcc

    with tvm.target.Target(target.tvm):
        try:
            return bytes(nvcc.compile_cuda(source, target_format="cubin", arch=cuda_arch(target), compiler="nvcc"))
        except RuntimeError as e:
            detail = str(e).split("Compilation error:")[-1].strip().splitlines()
            raise InternalError(f"target '{target.name}': nvcc failed on the generated kernels: "
                                f"{detail[0] if detail else 'no output'}") from None


@contextmanager
def nvcc_hook(target: Target):
    """TVM's `tvm_callback_cuda_compile` answered by `compile_cubin` for `target` while in the block; the
    previous hook (TVM's NVRTC one, if imported) restored after."""
    import tvm_ffi

    previous = tvm_ffi.get_global_func(_HOOK, allow_missing=True)
    tvm_ffi.register_global_func(_HOOK, lambda source, *_: compile_cubin(source, target), override=True)
    try:
        yield
    finally:
        if previous is None:
            tvm_ffi.remove_global_func(_HOOK)
        else:
            tvm_ffi.register_global_func(_HOOK, previous, override=True)


_HOOK = "tvm_callback_cuda_compile"


def fpack_imports(target: Target):
    """export_library's `fpack_imports`: the library binary with cubins in place of CUDA source, as an assembler
    file that includes it (`.incbin`): a C array of it, as TVM writes, takes g++ minutes and gigabytes for a
    model with large weights (GPT-2's 270 MB: the link failed)."""
    from tvm.runtime import _ffi_api

    def pack(module, is_system_lib: bool, prefix: str, workspace_dir: str) -> str:
        if is_system_lib or prefix:
            raise InternalError(f"target '{target.name}': edgec packs CUDA kernels for shared libraries only")
        blob = _ffi_api.ModulePackImportsToTensor(module).numpy().tobytes()
        data = os.path.join(workspace_dir, "devc.bin")
        with open(data, "wb") as f:
            f.write(with_cubins(blob, lambda source: compile_cubin(source, target)))
        path = os.path.join(workspace_dir, "devc.S")
        with open(path, "w", encoding="ascii") as f:
            f.write(_assembler_source(data))
        return path

    return pack


def with_cubins(blob: bytes, compile_source) -> bytes:
    """The library binary with every `cuda` module's source replaced by compile_source(source); modules
    already compiled (by `nvcc_hook`) are kept."""
    (nbytes,) = _U64.unpack_from(blob, 0)
    pos = 8
    indptr, pos = _read_vec(blob, pos)
    _, pos = _read_vec(blob, pos)
    out = [blob[8:pos]]
    for _ in range(len(indptr) - 1):
        kind, end = _read_bytes(blob, pos)
        out.append(blob[pos:end])
        pos = end
        if kind == b"_lib":
            continue
        payload, end = _read_bytes(blob, pos)
        if kind == b"cuda":
            payload = _cubin_payload(payload, compile_source)
        out.append(_U64.pack(len(payload)) + payload)
        pos = end
    if pos != 8 + nbytes:
        raise InternalError(f"unexpected TVM library binary layout ({8 + nbytes - pos} trailing bytes)")
    body = b"".join(out)
    return _U64.pack(len(body)) + body


def _cubin_payload(payload: bytes, compile_source) -> bytes:
    fmt, pos = _read_bytes(payload, 0)
    if fmt == b"cubin":
        return payload
    if fmt != b"cuda":
        raise InternalError(f"unexpected TVM CUDA module format '{fmt.decode(errors='replace')}' (expected source)")
    table_end = _skip_function_table(payload, pos)
    source, end = _read_bytes(payload, table_end)
    if end != len(payload):
        raise InternalError("unexpected TVM CUDA module layout (data is not the last field)")
    return _string(b"cubin") + payload[pos:table_end] + _string(compile_source(source.decode()))


def _skip_function_table(buf: bytes, pos: int) -> int:
    """Past map<str, FunctionInfo>: key, name, arg dtypes (4 bytes each), launch tags, arg tags (4 bytes each)."""
    (count,) = _U64.unpack_from(buf, pos)
    pos += 8
    for _ in range(count):
        _, pos = _read_bytes(buf, pos)  # key
        _, pos = _read_bytes(buf, pos)  # name
        pos = _skip_vec(buf, pos, 4)  # DLDataType per argument
        (tags,) = _U64.unpack_from(buf, pos)
        pos += 8
        for _ in range(tags):
            _, pos = _read_bytes(buf, pos)
        pos = _skip_vec(buf, pos, 4)  # ArgExtraTags per argument
    return pos


def _assembler_source(data_file: str) -> str:
    """The symbol TVM's loader looks up (`__tvm_ffi__library_bin`, as runtime.ModulePackImportsToC defines it):
    read-only data holding `data_file`'s bytes (an absolute path: the compiler's working directory is not the
    workspace's; the path does not reach the object), for the GNU assembler of any ELF target (x86-64, aarch64)."""
    return ("\t.section .rodata\n"
            "\t.globl __tvm_ffi__library_bin\n"
            "\t.type __tvm_ffi__library_bin, %object\n"
            "\t.balign 16\n"
            "__tvm_ffi__library_bin:\n"
            f"\t.incbin \"{data_file}\"\n"
            "\t.size __tvm_ffi__library_bin, . - __tvm_ffi__library_bin\n"
            "\t.section .note.GNU-stack,\"\",%progbits\n")


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = _U64.unpack_from(buf, pos)
    return buf[pos + 8:pos + 8 + length], pos + 8 + length


def _skip_vec(buf: bytes, pos: int, item_size: int) -> int:
    (length,) = _U64.unpack_from(buf, pos)
    return pos + 8 + item_size * length


def _read_vec(buf: bytes, pos: int) -> tuple[list[int], int]:
    (length,) = _U64.unpack_from(buf, pos)
    return [_U64.unpack_from(buf, pos + 8 + 8 * i)[0] for i in range(length)], pos + 8 + 8 * length


def _string(data: bytes) -> bytes:
    return _U64.pack(len(data)) + data
