"""Canonical statement order in the Relax VM's shape functions, so artifacts are byte-identical.

TVM's VMShapeLower computes symbolic shapes (`H[1] = 1024 * H[0]`, ...) into the VM's shape heap
`H`, emitting the stores in hash-map order: the order follows object addresses, so the same model
compiles to different machine code from run to run whenever it has a symbolic dim (a batch "N").
`canonical_shape_funcs` reorders each such function's stores by slot index, keeping every store
after the stores whose slots it reads (a topological order with the smallest slot first), which
depends only on the set of stores, not on the order TVM happened to emit them in.
"""

from __future__ import annotations

import re


def _shape_heap_stores(func):
    """(buffer, [(slot, reads, store)]) when the body is only stores of constant slots of one buffer."""
    from tvm import tirx

    body = func.body
    stmts = list(body.seq) if isinstance(body, tirx.SeqStmt) else []
    if len(stmts) < 2 or not all(isinstance(s, tirx.BufferStore) and len(s.indices) == 1
                                 and isinstance(s.indices[0], tirx.IntImm) for s in stmts):
        return None, []
    buffer = stmts[0].buffer
    if not all(s.buffer.same_as(buffer) for s in stmts):
        return None, []
    load = re.compile(rf"\b{re.escape(buffer.name)}\[T\.int64\((\d+)\)\]")
    return buffer, [(int(s.indices[0].value), {int(i) for i in load.findall(str(s.value))}, s) for s in stmts]


def canonical_order(stores: list[tuple[int, set[int], object]]) -> list | None:
    """Stores reordered smallest slot first, each after the stores it reads; None when unsafe to reorder."""
    slots = [slot for slot, _, _ in stores]
    if len(set(slots)) != len(slots):
        return None
    position = {slot: i for i, slot in enumerate(slots)}
    if any(position.get(r, -1) >= i for i, (_, reads, _) in enumerate(stores) for r in reads):
        return None  # a read of a slot written later (or by itself): order is meaningful, keep it
    done: set[int] = set()
    pending = sorted(stores, key=lambda s: s[0])
    order = []
    while pending:
        ready = next(s for s in pending if all(r in done or r not in position for r in s[1]))
        pending.remove(ready)
        done.add(ready[0])
        order.append(ready[2])
    return order


def canonical_shape_funcs():
    """A TIR pass: shape-heap store sequences in canonical order (other functions untouched)."""
    import tvm
    from tvm import tirx

    @tirx.transform.prim_func_pass(opt_level=0, name="edgec.CanonicalShapeFuncs")
    def _pass(func, _mod, _ctx):
        buffer, stores = _shape_heap_stores(func)
        order = canonical_order(stores) if buffer is not None else None
        if order is None:
            return func
        return func.with_body(tirx.SeqStmt(order))

    return tvm.transform.Sequential([_pass], name="edgec.Deterministic")
