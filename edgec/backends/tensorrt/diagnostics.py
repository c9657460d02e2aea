"""TensorRT's parse and build failures as one line naming the ONNX node, its op and what TensorRT said.

The ONNX parser reports every node it rejects (ParserError: node index, name, op, code, the checker
function and a description). For an op it has no importer for, the description is literally "false":
then the code and the checker (`UNSUPPORTED_NODE in checkDet`) are what TensorRT said. A C++ assertion's
condition is dropped and its explanation kept. Build failures arrive as log lines; the two kinds that
name a layer (no kernel for it; an op the target GPU cannot run) are mapped back to the ONNX node, whose
name TensorRT reuses, sometimes with a `_<n>` suffix.
"""

from __future__ import annotations

import re

import onnx

from edgec.errors import EdgecError, InternalError, UnsupportedError
from edgec.frontend.loader import node_label

ALTERNATIVE = "compile with --backend ort, or replace the op"
_NO_RUNNER = re.compile(r"(\S+) has no runners that implement it")
_GPU_CANNOT = re.compile(r"Cannot compile operation '([^']+)' for ([^:]+?): ([^.]+)\.")


def parser_error(error, model: onnx.ModelProto) -> str:
    """One ParserError as "node 'NAME' (op OP): what TensorRT said"."""
    index, name, op = error.node(), error.node_name(), error.node_operator()
    stack = list(error.local_function_stack())  # the subgraph a nested node sits in: ['if0 (If)', 'then (...)']
    if not stack and 0 <= index < len(model.graph.node):
        where = node_label(model.graph.node[index], index)
    elif op:
        where = f"node '{name or f'#{index}'}'" + (f" in {' > '.join(stack)}" if stack else "") + f" (op {op})"
    else:
        where = "the model"
    desc = " ".join(str(error.desc()).split())
    source = f"{str(error.code()).rsplit('.', 1)[-1]} in {error.func()}"
    if desc in ("", "false"):
        return f"{where}: not supported ({source})"
    if desc.startswith("Assertion failed: "):
        desc = desc.rsplit(": ", 1)[-1]  # the explanation after the C++ condition
    return f"{where}: {desc[:300]} ({source})"


def parse_failure(parser, model: onnx.ModelProto, model_path: str, toolkit: str) -> UnsupportedError:
    """Every node the parser rejected, in one error."""
    found = [parser_error(parser.get_error(i), model) for i in range(parser.num_errors)] or ["no details given"]
    what = "" if len(found) == 1 else f"{len(found)} nodes: "
    return UnsupportedError(f"{model_path}: {toolkit} cannot parse {what}{'; '.join(found)}; {ALTERNATIVE}")


def build_failure(errors: list[str], model: onnx.ModelProto, model_path: str, toolkit: str) -> EdgecError:
    """A failed build: UnsupportedError naming the node when TensorRT's log names one, else InternalError."""
    text = " ".join(errors)
    nodes = {n.name: (i, n) for i, n in enumerate(model.graph.node) if n.name}
    gpu = _GPU_CANNOT.search(text)
    if gpu and _node(nodes, gpu.group(1)):
        hint = "compile with --precision fp16, or for a newer GPU" if "FP32" in gpu.group(3) else ALTERNATIVE
        return UnsupportedError(f"{model_path}: {toolkit} cannot build {_node(nodes, gpu.group(1))} for "
                                f"{gpu.group(2)}: {gpu.group(3)}; {hint}")
    runner = _NO_RUNNER.search(text)
    if runner and _node(nodes, runner.group(1)):
        return UnsupportedError(f"{model_path}: {toolkit} has no kernel for {_node(nodes, runner.group(1))} "
                                f"({runner.group(0)}); {ALTERNATIVE}")
    detail = "; ".join(errors[-3:])[:600] or "no message"
    return InternalError(f"{model_path}: {toolkit} failed to build the engine: {detail}")


def _node(nodes: dict, layer: str) -> str | None:
    """The label of the ONNX node TensorRT's layer `layer` came from (`/NonMaxSuppression_81`: `/NonMaxSuppression`)."""
    for name in (layer, re.sub(r"_\d+$", "", layer)):
        if name in nodes:
            return node_label(nodes[name][1], nodes[name][0])
    return None
