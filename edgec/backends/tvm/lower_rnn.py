"""Lower RNN, GRU and LSTM nodes to an unrolled chain of MatMul/Add/Mul/Sigmoid/Tanh (static sequence length).

TVM's ONNX importer has no recurrent ops, so the TVM backend runs this first. Per direction, with the input
projection done once for all steps (XW = X @ W^T + Wb + Rb, the bias of the recurrent matmul folded in where
the math allows) and gate orders as ONNX defines them (f, g, h are the `activations`, default Sigmoid/Tanh/Tanh):

    RNN:  h_t = f(XW_t + h_{t-1} @ R^T)
    GRU:  z, r = f(XW_t[z, r] + h_{t-1} @ R[z, r]^T)
          n    = g(XW_t[h] + r * (h_{t-1} @ R[h]^T + Rb[h]))      if linear_before_reset
          n    = g(XW_t[h] + (r * h_{t-1}) @ R[h]^T)              otherwise (Rb[h] folded into XW)
          h_t  = (1 - z) * n + z * h_{t-1}
    LSTM: i, o, f', c~ = XW_t + h_{t-1} @ R^T  (peepholes: i += P_i * c_{t-1}, f' += P_f * c_{t-1})
          c_t = f(f') * c_{t-1} + f(i) * g(c~);   o = f(o + P_o * c_t);   h_t = o * h(c_t)

An initial state that is absent or provably zero (an all-zero constant, ConstantOfShape 0) drops the terms
it multiplies at t = 0, so a symbolic batch needs no shape arithmetic. Y/Y_h/Y_c keep the op's layout.
sequence_lens shorter than the sequence (forward direction) keep the state and write Y = 0 past each row's end.
What cannot be lowered (input_forget, reverse with short sequence_lens, other activations) raises an error
naming the node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgec.errors import UnsupportedError
from edgec.frontend.loader import names_read, node_label
from edgec.passes.base import PassContext

RECURRENT_OPS = ("RNN", "GRU", "LSTM")
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
# Activations that are ONNX ops of the same name, with their (alpha, beta) defaults where they take them.
_ACTIVATION_PARAMS = {"Sigmoid": (), "Tanh": (), "Relu": (), "Softsign": (), "Softplus": (),
                      "LeakyRelu": (0.01,), "ThresholdedRelu": (1.0,), "Elu": (1.0,), "HardSigmoid": (0.2, 0.5)}
MIN_OPSET = 13  # Split/Squeeze/Unsqueeze take their sizes and axes as inputs from opset 13 on


def has_recurrent_ops(model: onnx.ModelProto) -> bool:
    return any(n.op_type in RECURRENT_OPS and n.domain in ("", "ai.onnx") for n in model.graph.node)


def run(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    if not has_recurrent_ops(model):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    nodes = []
    for index, node in enumerate(graph.node):
        if node.op_type in RECURRENT_OPS and node.domain in ("", "ai.onnx"):
            if opset < MIN_OPSET:
                raise UnsupportedError(f"{ctx.model_path}: {node_label(node, index)}: lowering recurrent ops needs "
                                       f"opset >= {MIN_OPSET}, the model has {opset}; re-export with --opset 17")
            nodes.extend(_Lowering(graph, node, index, ctx.model_path).nodes)
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    _remove_dead_nodes(graph)
    return model


class _Lowering:
    """Emits the unrolled replacement of one recurrent node into `self.nodes`."""

    def __init__(self, graph: onnx.GraphProto, node: onnx.NodeProto, index: int, model_path: str):
        self.graph, self.node, self.nodes = graph, node, []
        self.where = f"{model_path}: {node_label(node, index)}"
        self.prefix = f"{node.name or node.op_type + str(index)}/"
        self.taken = {v.name for v in graph.input} | {t.name for t in graph.initializer}
        self.taken |= {o for n in graph.node for o in n.output}
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.producers = {o: n for n in graph.node for o in n.output}
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.hidden = int(attrs["hidden_size"])
        self.layout = int(attrs.get("layout", 0))
        direction = attrs.get("direction", b"forward")
        self.direction = direction.decode() if isinstance(direction, bytes) else direction
        self.clip = attrs.get("clip")
        self.linear_before_reset = int(attrs.get("linear_before_reset", 0))
        if attrs.get("input_forget", 0):
            raise UnsupportedError(f"{self.where}: input_forget=1 is not supported by the recurrent-op lowering "
                                   "(needed for the tvm backend); compile with --backend ort")
        self.activations = self._activations(attrs)
        self._lower()

    # --- emitting ------------------------------------------------------------------------------------------

    def _name(self, base: str) -> str:
        name, i = self.prefix + base, 1
        while name in self.taken:
            name, i = f"{self.prefix}{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self._name(op_type), **attrs))
        return out

    def split(self, x: str, sizes: list[int], axis: int) -> list[str]:
        outs = [self._name("split") for _ in sizes]
        self.nodes.append(helper.make_node("Split", [x, self.const(np.array(sizes, np.int64))], outs,
                                           name=self._name("Split"), axis=axis))
        return outs

    def const(self, array: np.ndarray) -> str:
        name = self._name("const")
        self.graph.initializer.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def activation(self, which: int, x: str) -> str:
        op_type, params = self.activations[which]
        return self.op(op_type, x, **params)

    # --- inputs --------------------------------------------------------------------------------------------

    def _input(self, i: int) -> str:
        return self.node.input[i] if len(self.node.input) > i else ""

    def _is_zero(self, name: str) -> bool:
        """True when `name` is absent or provably all zeros (constant, ConstantOfShape 0, Expand of zeros)."""
        if not name:
            return True
        if name in self.consts:
            return not self.consts[name].any()
        producer = self.producers.get(name)
        if producer is None:
            return False
        value = next((numpy_helper.to_array(a.t) for a in producer.attribute if a.name == "value"), None)
        if producer.op_type == "ConstantOfShape":
            return value is None or not value.any()
        if producer.op_type == "Constant":
            return value is not None and not value.any()
        return producer.op_type in ("Expand", "Tile", "Identity") and self._is_zero(producer.input[0])

    def _activations(self, attrs: dict) -> list[tuple[str, dict]]:
        per_direction = _DEFAULT_ACTIVATIONS[self.node.op_type]
        directions = 2 if self.direction == "bidirectional" else 1
        names = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
        names = names or per_direction * directions
        alphas, betas = list(attrs.get("activation_alpha", [])), list(attrs.get("activation_beta", []))
        result = []
        for name in names:
            if name not in _ACTIVATION_PARAMS:
                raise UnsupportedError(f"{self.where}: activation '{name}' has no ONNX op to lower it to "
                                       f"(supported: {', '.join(_ACTIVATION_PARAMS)}); compile with --backend ort")
            defaults = _ACTIVATION_PARAMS[name]
            params = {}
            if defaults:
                params["alpha"] = float(alphas.pop(0) if alphas else defaults[0])
            if len(defaults) > 1:
                params["beta"] = float(betas.pop(0) if betas else defaults[1])
            result.append((name, params))
        return result

    def _static_length(self, x: str) -> int:
        values = list(self.graph.input) + list(self.graph.value_info)
        info = next((v for v in values if v.name == x), None)
        dims = info.type.tensor_type.shape.dim if info is not None else []
        axis = 1 if self.layout else 0
        if len(dims) != 3 or not dims[axis].HasField("dim_value"):
            raise UnsupportedError(f"{self.where}: the sequence length of input '{x}' is not static, so the op cannot "
                                   "be unrolled for the tvm backend; fix it with --input-shape or use --backend ort")
        return dims[axis].dim_value

    def _direction_slice(self, name: str, d: int, rows: tuple[int, int] | None = None,
                         transpose: bool = False) -> str:
        """name[d] (rows a:b of it), optionally transposed: folded to a constant when `name` is one."""
        if name in self.consts:
            array = self.consts[name][d]
            array = array[rows[0]:rows[1]] if rows else array
            return self.const(array.T if transpose else array)
        out = self.op("Gather", name, self.const(np.array(d, np.int64)), axis=0)
        if rows:
            out = self.op("Gather", out, self.const(np.arange(*rows, dtype=np.int64)), axis=0)
        return self.op("Transpose", out) if transpose else out

    # --- the unrolled loop ---------------------------------------------------------------------------------

    def _lower(self) -> None:
        node, hidden = self.node, self.hidden
        x, w, r, b = (self._input(i) for i in range(4))
        lengths, h0 = self._input(4), self._input(5)
        c0, peep = self._input(6), self._input(7)
        steps = self._static_length(x)
        self.lengths = ""
        if lengths and not (lengths in self.consts and (self.consts[lengths] == steps).all()):
            if self.direction != "forward":
                raise UnsupportedError(f"{self.where}: sequence_lens shorter than the sequence is supported by the "
                                       "recurrent-op lowering (tvm backend) for direction 'forward' only; "
                                       "compile with --backend ort")
            self.lengths = lengths
        if self.layout:
            x = self.op("Transpose", x, perm=[1, 0, 2])
            h0 = self.op("Transpose", h0, perm=[1, 0, 2]) if not self._is_zero(h0) else ""
            c0 = self.op("Transpose", c0, perm=[1, 0, 2]) if not self._is_zero(c0) else ""
        directions = [0, 1] if self.direction == "bidirectional" else [0]
        ys, hs, cs = [], [], []
        for d in directions:
            reverse = self.direction == "reverse" or d == 1
            order = range(steps - 1, -1, -1) if reverse else range(steps)
            h_init = "" if self._is_zero(h0) else self.op("Gather", h0, self.const(np.array(d, np.int64)), axis=0)
            c_init = "" if self._is_zero(c0) else self.op("Gather", c0, self.const(np.array(d, np.int64)), axis=0)
            step = {"RNN": self._rnn_steps, "GRU": self._gru_steps, "LSTM": self._lstm_steps}[node.op_type]
            y, h, c = step(x, w, r, b, peep, d, h_init, c_init, list(order), hidden)
            ys.append(y)
            hs.append(h)
            cs.append(c)
        outputs = list(node.output) + [""] * (3 - len(node.output))
        axes0 = self.const(np.array([0], np.int64))
        axes1 = self.const(np.array([1], np.int64))
        if outputs[0]:
            stacked = [self.op("Unsqueeze", self.op("Concat", *[self.op("Unsqueeze", h, axes0) for h in y], axis=0),
                               axes1) for y in ys]
            result = stacked[0] if len(stacked) == 1 else self.op("Concat", *stacked, axis=1)
            if self.layout:
                self.op("Transpose", result, out=outputs[0], perm=[2, 0, 1, 3])
            else:
                self.op("Identity", result, out=outputs[0])
        for final, name in ((hs, outputs[1]), (cs, outputs[2])):
            if name:
                states = [self.op("Unsqueeze", s, axes0) for s in final]
                result = states[0] if len(states) == 1 else self.op("Concat", *states, axis=0)
                if self.layout:
                    self.op("Transpose", result, out=name, perm=[1, 0, 2])
                else:
                    self.op("Identity", result, out=name)

    def _input_projection(self, x: str, w: str, b: str, d: int, gates: int, hidden: int,
                          fold_recurrent_bias: np.ndarray) -> tuple[str, str | None]:
        """XW = X @ W[d]^T + Wb + Rb * fold_recurrent_bias (per gate); also returns Rb[d] (None without B)."""
        projected = self.op("MatMul", x, self._direction_slice(w, d, transpose=True))
        if not b:
            return projected, None
        if b in self.consts:
            wb, rb = self.consts[b][d, :gates * hidden], self.consts[b][d, gates * hidden:]
            bias = self.const(wb + rb * np.repeat(fold_recurrent_bias, hidden).astype(wb.dtype))
            return self.op("Add", projected, bias), self.const(rb)
        wb = self._direction_slice(b, d, rows=(0, gates * hidden))
        rb = self._direction_slice(b, d, rows=(gates * hidden, 2 * gates * hidden))
        mask = self.const(np.repeat(fold_recurrent_bias, hidden).astype(np.float32))
        return self.op("Add", projected, self.op("Add", wb, self.op("Mul", rb, mask))), rb

    def _advance(self, t: int, new: str, old: str) -> tuple[str, str]:
        """(state after step t, Y at step t): batch rows past their sequence_lens keep `old` and output 0."""
        if not self.lengths:
            return new, new
        valid = self.op("Less", self.const(np.array(t, np.int32)), self.lengths)
        valid = self.op("Unsqueeze", valid, self.const(np.array([1], np.int64)))
        zero = self.const(np.array(0.0, np.float32))
        return self.op("Where", valid, new, old or zero), self.op("Where", valid, new, zero)

    def _at(self, projected: str, t: int) -> str:
        return self.op("Gather", projected, self.const(np.array(t, np.int64)), axis=0)

    def _clip(self, x: str) -> str:
        if self.clip is None:
            return x
        bound = float(self.clip)
        return self.op("Clip", x, self.const(np.array(-bound, np.float32)), self.const(np.array(bound, np.float32)))

    def _rnn_steps(self, x, w, r, b, peep, d, h, c, order, hidden):
        projected, _ = self._input_projection(x, w, b, d, 1, hidden, np.ones(1))
        r_t = self._direction_slice(r, d, transpose=True)
        ys = {}
        for t in order:
            pre = self._at(projected, t)
            if h:
                pre = self.op("Add", pre, self.op("MatMul", h, r_t))
            h, ys[t] = self._advance(t, self.activation(d, self._clip(pre)), h)
        return [ys[t] for t in sorted(ys)], h, ""

    def _gru_steps(self, x, w, r, b, peep, d, h, c, order, hidden):
        lbr = self.linear_before_reset
        projected, rb = self._input_projection(x, w, b, d, 3, hidden, np.array([1.0, 1.0, 0.0 if lbr else 1.0]))
        r_zr = self._direction_slice(r, d, rows=(0, 2 * hidden), transpose=True)
        r_h = self._direction_slice(r, d, rows=(2 * hidden, 3 * hidden), transpose=True)
        rb_h = self.op("Gather", rb, self.const(np.arange(2 * hidden, 3 * hidden, dtype=np.int64)), axis=0) \
            if rb and lbr else ""
        f, g = 2 * d, 2 * d + 1
        one = self.const(np.array(1.0, np.float32))
        ys = {}
        for t in order:
            x_zr, x_h = self.split(self._at(projected, t), [2 * hidden, hidden], axis=-1)
            zr = self.op("Add", x_zr, self.op("MatMul", h, r_zr)) if h else x_zr
            z, reset = (self.activation(f, self._clip(v)) for v in self.split(zr, [hidden, hidden], axis=-1))
            if lbr:
                recurrent = self.op("MatMul", h, r_h) if h else ""
                if rb_h:
                    recurrent = self.op("Add", recurrent, rb_h) if recurrent else rb_h
            else:
                recurrent = self.op("MatMul", self.op("Mul", reset, h), r_h) if h else ""
            if recurrent and lbr:
                recurrent = self.op("Mul", reset, recurrent)
            n = self.activation(g, self._clip(self.op("Add", x_h, recurrent) if recurrent else x_h))
            new_h = self.op("Mul", self.op("Sub", one, z), n)
            h, ys[t] = self._advance(t, self.op("Add", new_h, self.op("Mul", z, h)) if h else new_h, h)
        return [ys[t] for t in sorted(ys)], h, ""

    def _lstm_steps(self, x, w, r, b, peep, d, h, c, order, hidden):
        projected, _ = self._input_projection(x, w, b, d, 4, hidden, np.ones(4))
        r_t = self._direction_slice(r, d, transpose=True)
        p_i = p_o = p_f = ""
        if peep and not self._is_zero(peep):
            p_i, p_o, p_f = (self._direction_slice(peep, d, rows=(k * hidden, (k + 1) * hidden)) for k in range(3))
        f, g, act_h = 3 * d, 3 * d + 1, 3 * d + 2
        ys = {}
        for t in order:
            pre = self._at(projected, t)
            if h:
                pre = self.op("Add", pre, self.op("MatMul", h, r_t))
            i, o, forget, cell = self.split(pre, [hidden] * 4, axis=-1)
            if c and p_i:
                i = self.op("Add", i, self.op("Mul", p_i, c))
                forget = self.op("Add", forget, self.op("Mul", p_f, c))
            i = self.activation(f, self._clip(i))
            new_c = self.op("Mul", i, self.activation(g, self._clip(cell)))
            if c:
                new_c = self.op("Add", self.op("Mul", self.activation(f, self._clip(forget)), c), new_c)
            if p_o:
                o = self.op("Add", o, self.op("Mul", p_o, new_c))
            o = self.activation(f, self._clip(o))
            h, ys[t] = self._advance(t, self.op("Mul", o, self.activation(act_h, new_c)), h)
            c = self._advance(t, new_c, c)[0]
        return [ys[t] for t in sorted(ys)], h, c


def _remove_dead_nodes(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers that no graph output depends on (e.g. the zero initial-state builders)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed |= names_read(node)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    needed |= {i.name for i in graph.input}
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
