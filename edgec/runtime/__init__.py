"""The edgec runtime: load a `.edgec` artifact and run it on numpy arrays.

    import edgec.runtime as rt
    m = rt.load("model.edgec", device="cpu")
    outs = m.run({"input": x})      # {name: array} in manifest order
    y = m(x)                        # single-input shortcut -> list of outputs

Needs only numpy and the backend's own runtime (TVM runtime or onnxruntime): never torch or onnx.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from edgec.errors import EdgecError, InternalError
from edgec.runtime import cuda
from edgec.runtime.artifact import ArtifactError, read_artifact
from edgec.runtime.executors import open_executor
from edgec.targets import host_arch, missing_cpu_features

__all__ = ["load", "Module", "InputError", "ArtifactError"]


class InputError(EdgecError, ValueError):
    """An argument the runtime cannot accept: inputs that do not match the artifact's spec, or a bad device."""


def _fmt_spec(name: str, shape, dtype: str) -> str:
    dims = "x".join(str(d) for d in shape) if shape else "scalar"
    return f"{name}: {dtype}[{dims}]"


class Module:
    """A loaded artifact. Calls are serialised by a lock, so one Module may be shared by threads."""

    def __init__(self, path: str, manifest: dict, executor, device: str):
        self.path = path
        self.device = device
        self.manifest = manifest
        self._executor = executor
        self._lock = threading.Lock()
        self.inputs = [(i["name"], tuple(i["shape"]), i["dtype"]) for i in manifest["inputs"]]
        self.outputs = [(o["name"], tuple(o["shape"]), o["dtype"]) for o in manifest["outputs"]]
        self._input_names = frozenset(name for name, _, _ in self.inputs)
        self._input_dtypes = [np.dtype(dtype) for _, _, dtype in self.inputs]

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    def __repr__(self) -> str:
        ins = ", ".join(_fmt_spec(*i) for i in self.inputs)
        target = self.manifest["target"]["name"]
        return f"<edgec Module {self.path} backend={self.backend} target={target} inputs=[{ins}]>"

    def run(self, feeds: dict) -> dict[str, np.ndarray]:
        """Run on {input name: array}; returns {output name: array} in manifest order."""
        arrays = self._validate(feeds)
        with self._lock:
            try:
                results = self._executor(arrays)
            except Exception as e:  # the backend's own error types (TVMError, onnxruntime Fail, ...)
                detail = " ".join(str(e).split())[:500] or type(e).__name__
                raise InternalError(f"{self.path}: the {self.backend} backend failed running validated inputs "
                                    f"({detail})") from e
        if len(results) != len(self.outputs):
            raise ArtifactError(f"{self.path}: the {self.backend} backend returned {len(results)} outputs but the "
                                f"manifest lists {len(self.outputs)}; recompile the artifact with `edgec compile`")
        return {name: np.asarray(r) for (name, _, _), r in zip(self.outputs, results)}

    def bind(self, feeds: dict):
        """A zero-argument callable running the model on `feeds` staged where the backend computes (copied to
        the GPU once for CUDA) and returning once the device is done, outputs left there; for timing. Backends
        without device staging run the validated `feeds` each call."""
        arrays = self._validate(feeds)
        staged = getattr(self._executor, "bind", None)
        call = staged(arrays) if staged is not None else lambda: self._executor(arrays)

        def run() -> None:
            with self._lock:
                call()

        return run

    def __call__(self, *arrays) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            expected = ", ".join(_fmt_spec(*i) for i in self.inputs)
            raise InputError(f"expected {len(self.inputs)} positional input(s) ({expected}), got {len(arrays)}")
        return list(self.run({name: a for (name, _, _), a in zip(self.inputs, arrays)}).values())

    def _validate(self, feeds) -> list[np.ndarray]:
        """The inputs in manifest order as C-contiguous arrays; InputError naming what does not match.
        Runs on every call, so the messages are only formatted once something is wrong."""
        if not isinstance(feeds, dict):
            raise InputError(f"run() takes a dict {{input name: numpy array}}, got {type(feeds).__name__}")
        if feeds.keys() != self._input_names:
            names = [n for n, _, _ in self.inputs]
            expected = ", ".join(_fmt_spec(*i) for i in self.inputs)
            raise InputError(f"input names do not match: unknown {[k for k in feeds if k not in names]}, "
                             f"missing {[n for n in names if n not in feeds]}; expected {expected}")
        symbols: dict[str, int] = {}
        arrays = []
        for (name, shape, dtype), np_dtype in zip(self.inputs, self._input_dtypes):
            x = feeds[name]
            if not isinstance(x, np.ndarray):
                raise InputError(f"input '{name}': expected a numpy array ({_fmt_spec(name, shape, dtype)}), "
                                 f"got {type(x).__name__}")
            if x.dtype != np_dtype:
                raise InputError(f"input '{name}': dtype {x.dtype} does not match; expected "
                                 f"{_fmt_spec(name, shape, dtype)}, given {_fmt_spec(name, x.shape, str(x.dtype))} "
                                 f"(convert with .astype('{dtype}'))")
            if not _shape_matches(shape, x.shape, symbols):
                raise InputError(f"input '{name}': shape {tuple(x.shape)} does not match; expected "
                                 f"{_fmt_spec(name, shape, dtype)}, given {_fmt_spec(name, x.shape, str(x.dtype))}")
            arrays.append(np.ascontiguousarray(x))
        return arrays


def _shape_matches(spec, shape, symbols: dict[str, int]) -> bool:
    if len(spec) != len(shape):
        return False
    for want, got in zip(spec, shape):
        if isinstance(want, int):
            if want != got:
                return False
        elif got < 1 or symbols.setdefault(want, got) != got:
            return False
    return True


def parse_device(device) -> tuple[str, int]:
    """'cpu' -> ('cpu', 0), 'cuda:1' -> ('cuda', 1); anything else raises InputError."""
    kind, sep, index = str(device).partition(":")
    if kind not in ("cpu", "cuda") or (sep and not (index.isascii() and index.isdigit())):
        raise InputError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    return kind, int(index or 0)


def load(path: str | os.PathLike, device: str = "cpu") -> Module:
    """Verify and load an artifact for `device` ("cpu", "cuda" or "cuda:N")."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"load() takes the path of an .edgec artifact (str or os.PathLike), got {type(path).__name__}")
    parse_device(device)
    manifest, files = read_artifact(path)
    target = manifest["target"]
    arch = host_arch()
    if target.get("arch") not in (None, arch):
        emulate = (f"; run it here under emulation with `edgec bench {path} --emulate`, or"
                   if target["arch"] == "aarch64" and arch == "x86_64" and target.get("device") == "cpu" else "; ")
        raise ArtifactError(f"{path}: compiled for {target['arch']} (target '{target['name']}') but this host is "
                            f"{arch}{emulate} compile for this host with `edgec compile ... --target cpu`")
    kind = device.partition(":")[0]
    if target.get("device") != kind:
        if target.get("device") == "cuda" and not cuda.has_gpu():  # not the argument: this host cannot run it
            raise ArtifactError(f"{path}: compiled for cuda (target '{target['name']}'), and this host has no "
                                "NVIDIA GPU; run it on a machine with one, with device='cuda'")
        raise InputError(f"{path}: compiled for {target.get('device')} (target '{target['name']}'); load it with "
                         f"device='{target.get('device')}'")
    if target.get("device") == "cpu":
        missing = missing_cpu_features(target.get("cpu_features", []))
        if missing:
            raise ArtifactError(f"{path}: compiled for target '{target['name']}', which needs CPU features this "
                                f"host lacks ({', '.join(missing)}); recompile with `--target cpu`")
    try:
        executor = open_executor(manifest, files, device, str(path))
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    return Module(str(path), manifest, executor, device)
