"""Evaluate every `call_tir` whose inputs are all constants, with one build for the whole module.

After legalization the weight transposes ConvertLayout adds, and after scheduling the weight
repacks the Gemm rule adds, are `call_tir(kernel, (constant,))`. Relax's FoldConstant builds one
LLVM module per distinct kernel (about 0.2-1 s each: 50 s for MobileNetV2's ~100 weight shapes).
Here all such kernels go into one module, built once for the host; each call runs once and is
replaced by its result as a `relax.const`. The values are exactly what the kernels compute at run
time, so the rewrite changes no numerics.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.backends.tvm.rewrites._match import rewrite_functions

MAX_ROUNDS = 4


def _constant_bindings(func: relax.Function) -> dict:
    """Variables bound directly to constants (the importer binds every weight to one)."""
    bound = {}
    if isinstance(func.body, relax.SeqExpr):
        for block in func.body.blocks:
            for binding in block.bindings:
                if isinstance(binding, relax.VarBinding) and isinstance(binding.value, tvm.ir.Constant):
                    bound[binding.var] = binding.value
    return bound


def _constant_args(call: relax.Expr, bound: dict) -> list | None:
    """The constant inputs of a foldable `call_tir` with a static tensor result, else None."""
    if not (isinstance(call, relax.Call) and call.op == tvm.ir.Op.get("relax.call_tir")
            and isinstance(call.args[0], relax.GlobalVar) and isinstance(call.args[1], relax.Tuple)
            and isinstance(call.ty, relax.TensorType) and call.ty.shape is not None
            and all(isinstance(d, tvm.tirx.IntImm) for d in call.ty.shape.values)):
        return None
    args = [bound.get(a, a) for a in call.args[1].fields]
    return args if all(isinstance(a, tvm.ir.Constant) for a in args) else None


def _collect(mod: tvm.IRModule) -> list[tuple[relax.Call, list]]:
    calls = []
    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            bound = _constant_bindings(func)

            def visit(expr, bound=bound):
                args = _constant_args(expr, bound)
                if args is not None:
                    calls.append((expr, args))

            relax.analysis.post_order_visit(func, visit)
    return calls


@mutator
class _Replace(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, values: dict):
        super().__init__(mod)
        self.values = values

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        if call in self.values:
            return self.values[call]
        return super().visit_call_(call)


@tvm.transform.module_pass(opt_level=0, name="edgec.FoldConstantCalls")
def fold_constant_calls(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Fold rounds until no call has only constant inputs (a fold can make its consumer foldable)."""
    for _ in range(MAX_ROUNDS):
        calls = _collect(mod)
        if not calls:
            break
        mod = _fold(mod, calls)
    return mod


def _fold(mod: tvm.IRModule, calls: list) -> tvm.IRModule:
    kernels = {}
    for call, _ in calls:
        gvar = call.args[0]
        if gvar.name_hint not in kernels and isinstance(mod[gvar], tirx.PrimFunc):
            kernels[gvar.name_hint] = mod[gvar].with_attr("global_symbol", gvar.name_hint)
    host = tvm.target.Target({"kind": "llvm"})
    lib = tvm.compile(tvm.IRModule({tvm.ir.GlobalVar(n): f for n, f in kernels.items()}), target=host)
    values = {}
    for call, args in calls:
        if call.args[0].name_hint not in kernels:
            continue
        shape = [int(d.value) for d in call.ty.shape.values]
        out = tvm.runtime.empty(shape, call.ty.dtype, tvm.cpu())
        lib[call.args[0].name_hint](*[a.value for a in args], out)
        values[call] = relax.const(out.numpy(), call.ty.dtype)
    replace = _Replace(mod, values)
    mod = rewrite_functions(mod, replace)
    return relax.transform.DeadCodeElimination()(mod)
