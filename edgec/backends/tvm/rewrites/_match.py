"""Small pieces the Relax rewrites share: matchers, and running a mutator over a module."""

from __future__ import annotations

import tvm
from tvm import relax


def op_name(expr) -> str | None:
    """The operator's name when `expr` calls a Relax op, else None."""
    return expr.op.name if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) else None


def scalar_value(expr) -> float | None:
    """A constant holding one value (any rank), as a Python number."""
    if isinstance(expr, tvm.ir.Constant) and expr.value.numpy().size == 1:
        return expr.value.numpy().reshape(()).item()
    return None


def transposed(expr) -> relax.Expr | None:
    """The operand of a 2-D transpose (`permute_dims` with no axes, which reverses them, or [1, 0]), else None."""
    if op_name(expr) != "relax.permute_dims":
        return None
    return expr.args[0] if expr.attrs.axes is None or [int(a) for a in expr.attrs.axes] == [1, 0] else None


def producer(mutator, expr):
    """What `expr` is bound to, when it is a variable bound in the block `mutator` is visiting; else `expr`."""
    bound = mutator.lookup_binding(expr) if isinstance(expr, relax.Var) else None
    return expr if bound is None else bound


def rewrite_functions(mod, mutator):
    """`mod` with every Relax function replaced by `mutator`'s rewrite of it (PrimFuncs untouched)."""
    for gvar, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mod[gvar] = mutator.visit_expr(func)
    return mod


def rewrite_functions_emitting(mod, mutator):
    """`rewrite_functions` for a mutator that emits new PrimFuncs (`call_te`): the module its builder holds, with
    every Relax function replaced and the PrimFuncs added."""
    for gvar, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gvar, mutator.visit_expr(func))
    return mutator.builder_.get()
