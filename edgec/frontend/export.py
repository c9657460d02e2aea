"""PyTorch -> ONNX export of zoo networks or any `module:callable` returning an nn.Module."""

from __future__ import annotations

import importlib
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


def export_onnx(net, input_shape: tuple[int, ...], path: str | os.PathLike, opset: int = 17,
                output_names: tuple[str, ...] = ("logits",), dynamic_batch: bool = True) -> Path:
    """Export `net` (eval mode) with one float input called 'input'; batch dim symbolic by default."""
    check_opset(opset)
    import torch

    example = torch.zeros(input_shape, dtype=torch.float32)
    axes = {name: {0: "batch"} for name in ("input", *output_names)} if dynamic_batch else None
    if axes is not None:  # outputs whose first axis is not the batch (e.g. NMS rows) say so on the module
        axes.update(getattr(net, "onnx_dynamic_axes", {}))
    path = Path(path)

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net.eval(), (example,), tmp, input_names=["input"], output_names=list(output_names),
                              dynamic_axes=axes, opset_version=opset, dynamo=False)

    try:
        write_atomic(path, write)
    except (RuntimeError, TypeError, ValueError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgecError(f"PyTorch could not export the model with input shape "
                         f"{'x'.join(map(str, input_shape))}: {message}") from None
    return path
