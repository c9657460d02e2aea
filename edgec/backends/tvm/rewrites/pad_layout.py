"""Move `permute_dims` above `pad` so padding follows ConvertLayout's NHWC (TVM's pad has no layout rule).

ConvertLayout leaves `pad` in its original layout: `permute_dims(pad(permute_dims(x, to_nchw)), to_nhwc)`
around the explicit zero-point pads of integer convs (`integer_qdq`). Rewrite:
    permute_dims(pad(y, widths, v), axes) -> pad(permute_dims(y, axes), widths permuted by axes, v)
and two stacked permute_dims compose, to nothing when they cancel; the values are the same elements moved.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.backends.tvm.rewrites._match import op_name, producer, rewrite_functions


def _axes(call: relax.Call) -> list[int] | None:
    axes = call.attrs.axes
    return None if axes is None else [int(a) for a in axes]


@mutator
class _Sinker(PyExprMutator):
    def _permute(self, data, axes: list[int]):
        inner = producer(self, data)
        if op_name(inner) == "relax.permute_dims" and _axes(inner) is not None:
            axes = [_axes(inner)[a] for a in axes]
            data = inner.args[0]
        if axes == list(range(len(axes))):
            return data
        return relax.op.permute_dims(data, axes)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if op_name(call) != "relax.permute_dims" or _axes(call) is None:
            return call
        pad = producer(self, call.args[0])
        if op_name(pad) != "relax.nn.pad" or pad.attrs.pad_mode != "constant":
            return call
        axes, widths = _axes(call), [int(w) for w in pad.attrs.pad_width]
        permuted = [w for a in axes for w in widths[2 * a:2 * a + 2]]
        return relax.op.nn.pad(self._permute(pad.args[0], axes), permuted, pad_value=pad.attrs.pad_value)


@tvm.transform.module_pass(opt_level=0, name="edgec.PadLayout")
def pad_layout(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Sink layout transposes through every constant pad in the Relax functions."""
    sinker = _Sinker(mod)
    mod = rewrite_functions(mod, sinker)
    return relax.transform.DeadCodeElimination()(mod)
