"""Load an ONNX file into a checked, shape-inferred ModelProto, with input-shape overrides.

Every failure names the file and, where there is one, the node and op, and says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from edgec.errors import EdgecError

MAX_MODEL_BYTES = 2 << 30  # protobuf's own limit; larger models need external data
MAX_INPUT_ELEMENTS = (1 << 31) - 1  # int32 indexing in the backends' kernels
KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"}
_DTYPES = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool",
}


def printable(text: str | bytes) -> str:
    """A protobuf string field safe to print; protobuf hands back bytes when a field is not valid UTF-8."""
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def node_label(node: onnx.NodeProto, index: int | None = None) -> str:
    """How errors name a node: its name (or index) and op, with the domain when not the default."""
    name = printable(node.name) or (f"#{index}" if index is not None else "<unnamed>")
    domain = f", domain '{printable(node.domain)}'" if node.domain not in ("", "ai.onnx") else ""
    return f"node '{name}' (op {printable(node.op_type)}{domain})"


def names_read(node: onnx.NodeProto) -> set[str]:
    """The values a node reads: its inputs, and what its subgraphs read from enclosing scopes (their nodes'
    inputs, and outputs that name an outer value)."""
    names = set(node.input)
    for attr in node.attribute:
        for sub in [attr.g] * attr.HasField("g") + list(attr.graphs):
            names.update(v.name for v in sub.output)
            for inner in sub.node:
                names |= names_read(inner)
    return names


def load_model(path: str | os.PathLike, input_shapes: dict | None = None) -> onnx.ModelProto:
    """Read, validate and shape-infer `path`, applying {input name (or None): dims} overrides."""
    path = Path(path)
    if not path.exists():
        raise EdgecError(f"{path}: no such file")
    if not path.is_file():
        raise EdgecError(f"{path}: not a regular file; pass the path of an .onnx model")
    size = path.stat().st_size
    if size == 0:
        raise EdgecError(f"{path}: file is empty; expected an ONNX model (export one with `edgec export`)")
    if size > MAX_MODEL_BYTES:
        raise EdgecError(f"{path}: {size} bytes exceeds protobuf's 2 GiB limit; save the weights as ONNX "
                         "external data (onnx.save(..., save_as_external_data=True))")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EdgecError(f"{path}: cannot read the file ({e.strerror or e})") from None
    if data.startswith(b"PK\x03\x04"):
        raise EdgecError(f"{path}: is a zip file (an .edgec artifact?), not an ONNX model; pass the .onnx "
                         "file, or use `edgec bench`/`edgec inspect` on a .edgec artifact")
    try:
        model = onnx.load_model_from_string(data)  # external data: below, after checking where it points
    except (DecodeError, RuntimeWarning, ValueError, UnicodeDecodeError) as e:
        raise EdgecError(f"{path}: not a valid ONNX model (protobuf parse failed: {e}); "
                         "the file may be truncated or not ONNX") from None
    if not model.graph.node and not model.graph.output:
        raise EdgecError(f"{path}: parsed as protobuf but holds no ONNX graph; the file is not an ONNX model")
    _load_external_data(model, path)
    check_model(model, path)
    if input_shapes:
        model = override_input_shapes(model, input_shapes, path)
    check_input_sizes(model, path)
    return infer_shapes(model, path)


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    external = [t for t in model.graph.initializer if uses_external_data(t)]
    if not external:
        return
    base = path.parent
    for tensor in external:
        name = printable(tensor.name)
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        try:
            target = (base / location).resolve()
            exists = target.is_file()
        except (TypeError, ValueError, OSError):  # bytes (not UTF-8), NUL, names too long, symlink loops
            target, exists = None, False
        if not location or target is None or base.resolve() not in target.parents:
            raise EdgecError(f"{path}: initializer '{name}' points at external data {printable(location)!r} "
                             "outside the model's directory; refusing it")
        if not exists:
            raise EdgecError(f"{path}: initializer '{name}' needs external data file '{location}', "
                             f"which is missing; put it next to {path.name}")
    try:
        load_external_data_for_model(model, str(base))
    except (OSError, ValueError) as e:
        raise EdgecError(f"{path}: could not read external data ({e})") from None


def check_model(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """ONNX checker plus op/domain checks that name the offending node."""
    opsets = {o.domain: o.version for o in model.opset_import}
    for i, node in enumerate(model.graph.node):
        if not isinstance(node.op_type, str) or not isinstance(node.domain, str):
            raise EdgecError(f"{path}: {node_label(node, i)} has an op type or domain that is not valid UTF-8; "
                             "the file is corrupt, export the model again")
        domain = node.domain or ""
        if domain not in KNOWN_DOMAINS and domain not in opsets:
            raise EdgecError(f"{path}: {node_label(node, i)} uses domain '{domain}', which the model does not "
                             "import; fix the exporter's opset_import")
        if domain not in KNOWN_DOMAINS:
            raise EdgecError(f"{path}: {node_label(node, i)} is a custom op from domain '{domain}' that no edgec "
                             "backend implements; replace it with standard ONNX ops before compiling")
        if domain in ("", "ai.onnx"):
            version = opsets.get("", opsets.get("ai.onnx", 0))
            if not onnx.defs.has(node.op_type, ""):
                raise EdgecError(f"{path}: {node_label(node, i)} is not an operator of the standard ONNX domain "
                                 "'ai.onnx'; check the op name or export the model with standard ops")
            try:
                onnx.defs.get_schema(node.op_type, version, "")
            except onnx.defs.SchemaError:
                raise EdgecError(f"{path}: {node_label(node, i)} does not exist at opset {version}; export with "
                                 "a newer --opset") from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0]
        raise EdgecError(f"{path}: invalid ONNX model: {printable(first)}") from None
    except UnicodeDecodeError:  # the checker's message quotes a name that is not UTF-8
        raise EdgecError(f"{path}: invalid ONNX model: a name or string attribute is not valid UTF-8; "
                         "the file is corrupt, export the model again") from None


def override_input_shapes(model: onnx.ModelProto, shapes: dict, path: str | os.PathLike) -> onnx.ModelProto:
    """Set graph input dims (ints, or names for dims that stay symbolic); a None key means the model's only
    input. Clears stale inferred shapes."""
    inputs = graph_inputs(model)
    by_name = {i.name: i for i in inputs}
    model = onnx.ModelProto.FromString(model.SerializeToString())
    new_inputs = {i.name: i for i in model.graph.input}
    for name, dims in shapes.items():
        if name is None:
            if len(inputs) != 1:
                raise EdgecError(f"{path}: the model has {len(inputs)} inputs ({', '.join(by_name)}); "
                                 "name one: --input-shape NAME=DIMS")
            name = inputs[0].name
        if name not in by_name:
            raise EdgecError(f"{path}: --input-shape names '{name}', but the model's inputs are "
                             f"{', '.join(by_name) or 'none'}")
        tensor_type = new_inputs[name].type.tensor_type
        old = tensor_type.shape.dim
        if len(old) != len(dims):
            raise EdgecError(f"{path}: input '{name}' has rank {len(old)} but --input-shape gives "
                             f"{'x'.join(map(str, dims))} (rank {len(dims)})")
        for dim, value in zip(old, dims):
            dim.Clear()
            if isinstance(value, str):
                dim.dim_param = value  # a named symbolic dim stays symbolic
            else:
                dim.dim_value = value
    del model.graph.value_info[:]
    return model


def check_input_sizes(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Refuse negative dims and inputs whose static dims multiply past MAX_INPUT_ELEMENTS (often a typo)."""
    for value in graph_inputs(model):
        dims = [d for d in dims_of(value) if isinstance(d, int)]
        if any(d < 0 for d in dims):
            raise EdgecError(f"{path}: input '{printable(value.name)}' has a negative dimension "
                             f"({'x'.join(map(str, dims_of(value)))}); fix the model or pass --input-shape")
        elements = 1
        for d in dims:
            elements *= d
        if elements > MAX_INPUT_ELEMENTS:
            raise EdgecError(f"{path}: input '{printable(value.name)}' has shape "
                             f"{'x'.join(map(str, dims_of(value)))} ({elements} elements); edgec supports at most "
                             f"{MAX_INPUT_ELEMENTS} elements per input, check --input-shape")


def infer_shapes(model: onnx.ModelProto, path: str | os.PathLike) -> onnx.ModelProto:
    """Strict ONNX shape inference; a failure names the node and shape that do not fit."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except UnicodeDecodeError:  # the inference error quotes a name that is not UTF-8
        raise EdgecError(f"{path}: shape inference failed on a name or string that is not valid UTF-8; the file "
                         "is corrupt, export the model again") from None
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError, ValueError) as e:
        message = printable(" ".join(str(e).split()))
        raise EdgecError(f"{path}: shape inference failed: {message}; check --input-shape against what the "
                         "model expects") from None


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real graph inputs: those not also listed as initializers (older exporters list weights too)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def dims_of(value: onnx.ValueInfoProto) -> list[int | str]:
    """Dims of a tensor value: ints where known, the symbol (or '?') where not."""
    out: list[int | str] = []
    for i, d in enumerate(value.type.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            out.append(d.dim_value)
        else:
            out.append(d.dim_param or f"{value.name}_dim{i}")
    return out


def dtype_of(value: onnx.ValueInfoProto) -> str:
    elem = value.type.tensor_type.elem_type
    if elem not in _DTYPES:
        raise EdgecError(f"tensor '{value.name}' has element type {onnx.TensorProto.DataType.Name(elem)}, "
                         "which edgec's runtime does not support")
    return _DTYPES[elem]


def io_spec(model: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    """Manifest-style [{name, shape, dtype}] for the graph's inputs and outputs."""
    def spec(values):
        return [{"name": v.name, "shape": dims_of(v), "dtype": dtype_of(v)} for v in values]

    return spec(graph_inputs(model)), spec(model.graph.output)


def single_input(model: onnx.ModelProto, model_path: str, purpose: str) -> onnx.ValueInfoProto:
    """The model's only real input; EdgecError naming `purpose` ("compare feeds") when it has several."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise EdgecError(f"{model_path}: {purpose} single-input models; this one has {len(inputs)} inputs")
    return inputs[0]


def input_specs(model: onnx.ModelProto) -> list[tuple[str, list[int | str], str]]:
    """[(name, dims, numpy dtype name)] of the real graph inputs, what edgec.runtime.inputs generates for."""
    return [(v.name, dims_of(v), onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name)
            for v in graph_inputs(model)]
