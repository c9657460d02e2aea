"""PyTorch -> ONNX export of zoo networks or any `module:callable` returning an nn.Module."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import sys
import warnings
from pathlib import Path

from edgec.errors import EdgecError
from edgec.files import write_atomic


def resolve_exportable(spec: str) -> tuple[object, tuple[int, ...] | None, tuple[str, ...]]:
    """A zoo name (trained weights) or 'pkg.module:callable' -> (module, default input shape, output names)."""
    if ":" not in spec:
        from edgec.zoo import registry, train

        try:
            entry = registry.get(spec)
        except KeyError as e:
            raise EdgecError(f"{e.args[0]}; or pass MODULE:CALLABLE returning a torch.nn.Module") from None
        return train.load_trained(spec), entry.input_shape, entry.output_names
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:  # last: the user's folder never shadows installed packages
        sys.path.append(os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise EdgecError(f"cannot load '{spec}': {e}") from None
    import torch

    if not isinstance(factory, torch.nn.Module) and not callable(factory):
        raise EdgecError(f"'{spec}' is a {type(factory).__name__}, not a callable returning a torch.nn.Module")
    try:
        net = factory() if not isinstance(factory, torch.nn.Module) else factory
    except Exception as e:  # the user's own code failed
        raise EdgecError(f"'{spec}' raised {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    if not isinstance(net, torch.nn.Module):
        raise EdgecError(f"'{spec}' returned {type(net).__name__}, expected a torch.nn.Module")
    shape = getattr(net, "input_shape", None)
    return net.eval(), (tuple(shape) if shape else None), ("output",)


def check_opset(opset: int) -> None:
    if not 7 <= opset <= 23:
        raise EdgecError(f"--opset {opset}: supported opsets are 7..23")


EXPORTERS = ("dynamo", "torchscript")  # torch.onnx.export(dynamo=True): PyTorch's default since 2.9; dynamo=False
DEFAULT_OPSET = {"dynamo": 18, "torchscript": 17}  # the dynamo exporter's lowest opset is 18


def export_onnx(net, input_shape: tuple[int, ...], path: str | os.PathLike, opset: int | None = None,
                output_names: tuple[str, ...] = ("logits",), dynamic_batch: bool = True,
                exporter: str = "torchscript") -> Path:
    """Export `net` (eval mode) with one float input called 'input'; batch dim symbolic by default."""
    import torch

    axes = {name: {0: "batch"} for name in ("input", *output_names)} if dynamic_batch else None
    if axes is not None:  # outputs whose first axis is not the batch (e.g. NMS rows) say so on the module
        axes.update(getattr(net, "onnx_dynamic_axes", {}))
    return export_module(net, {"input": torch.zeros(input_shape, dtype=torch.float32)}, path, opset, output_names,
                         exporter, axes)


def _own_external_data(tmp: str, path: Path) -> None:
    """The dynamo exporter writes the weights beside the file it is given, as `<tmp>.data`, which the renamed
    file would keep pointing at (a hidden `.name.onnx.XXXX.partial.data`): embed them, or, past protobuf's 2 GiB,
    write them as `<name>.data` beside `path`."""
    if not Path(tmp + ".data").exists():
        return
    import onnx

    model = onnx.load(tmp)
    if model.ByteSize() < onnx.checker.MAXIMUM_PROTOBUF:
        onnx.save_model(model, tmp)
    else:
        onnx.save_model(model, tmp, save_as_external_data=True, location=f"{path.name}.data")


def export_module(net, inputs: dict, path: str | os.PathLike, opset: int | None = None,
                  output_names: tuple[str, ...] = ("logits",), exporter: str = "torchscript",
                  dynamic_axes: dict | None = None) -> Path:
    """Export `net` (eval mode) called with `inputs` ({name: example tensor}, in forward's argument order) with
    either PyTorch exporter; the file appears only when the export succeeded."""
    if exporter not in EXPORTERS:
        raise EdgecError(f"--exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    opset = DEFAULT_OPSET[exporter] if opset is None else opset
    check_opset(opset)
    if exporter == "dynamo" and opset < DEFAULT_OPSET["dynamo"]:
        raise EdgecError(f"--opset {opset}: the dynamo exporter writes opset 18 or later; pass --opset 18 or "
                         "--exporter torchscript")
    import torch

    path = Path(path)

    def write(tmp: str) -> None:
        quiet_logs = logging.getLogger("torch.onnx"), logging.getLogger("torch._dynamo")
        levels = [log.level for log in quiet_logs]
        try:
            for log in quiet_logs:  # "torchvision is not installed. Skipping torchvision::nms" and the like
                log.setLevel(logging.ERROR)
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # dynamo's progress lines
                warnings.simplefilter("ignore")
                torch.onnx.export(net.eval(), tuple(inputs.values()), tmp, input_names=list(inputs),
                                  output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=opset,
                                  dynamo=exporter == "dynamo")
            _own_external_data(tmp, path)
        finally:
            Path(tmp + ".data").unlink(missing_ok=True)
            for log, level in zip(quiet_logs, levels):
                log.setLevel(level)

    try:
        write_atomic(path, write)
    except EdgecError:  # the output path
        raise
    except Exception as e:  # both exporters raise many types (torch._dynamo, onnxscript, RuntimeError ...)
        while e.__cause__ is not None:  # the dynamo exporter wraps the reason in "step 3/3 ... Next steps"
            e = e.__cause__
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        shapes = ", ".join(f"{n}={'x'.join(map(str, t.shape))}" for n, t in inputs.items())
        other = "torchscript" if exporter == "dynamo" else "dynamo"
        raise EdgecError(f"PyTorch's {exporter} exporter could not export the model at {shapes}: "
                         f"{message}; check the input shape, or try --exporter {other}") from None
    return path
