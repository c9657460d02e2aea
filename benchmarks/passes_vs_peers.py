"""Graph optimization, edgec vs its peers: node count after optimization and optimize time.

Peers: onnxslim (`onnxslim.slim`) and ONNX Runtime's offline-optimized model at the basic level
(SessionOptions.optimized_model_filepath with ORT_ENABLE_BASIC, which keeps standard ONNX ops).
Models: four small ones built here (ResNet-style block net with BatchNorm, MobileNet-style depthwise net,
MLP with Dropout and Identity, a graph of constant subgraphs and transpose pairs), then every zoo entry
(untrained weights: counts and times do not depend on the values), exported with BatchNorm kept, and with
--real the real-model suite (edgec.zoo.real: 7 transformers architectures x 2 PyTorch exporters, static shapes).
Each optimized model is also run with ONNX Runtime against the original (max abs error column).

    .venv/bin/python benchmarks/passes_vs_peers.py [--repeat 3] [--no-zoo] [--real] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgec.frontend.loader import input_specs  # noqa: E402
from edgec.frontend.reference import Reference  # noqa: E402
from edgec.metrics.compare import errors  # noqa: E402
from edgec.passes import DEFAULT_PIPELINE, PassContext, run_pipeline  # noqa: E402
from edgec.runtime.inputs import random_inputs  # noqa: E402

RNG = np.random.default_rng(0)


def _torch_export(net, shape) -> onnx.ModelProto:
    """TorchScript export in eval mode with BatchNorm kept, batch dim symbolic."""
    import torch

    for m in net.modules():  # non-trivial statistics, as after training
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(net.eval(), (torch.randn(*shape),), str(path), input_names=["input"], dynamo=False,
                          output_names=["output"], training=torch.onnx.TrainingMode.PRESERVE, opset_version=17,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        return onnx.load(str(path))


def resnet_blocks() -> onnx.ModelProto:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                      nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                        Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(64, 10))
    return _torch_export(net, (1, 3, 32, 32))


def mobilenet_depthwise() -> onnx.ModelProto:
    import torch
    from torch import nn

    def separable(cin, cout, stride):
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
                        *separable(16, 32, 1), *separable(32, 64, 2), *separable(64, 64, 1), *separable(64, 128, 2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(128, 10))
    return _torch_export(net, (1, 3, 32, 32))


def _model(nodes, inputs, outputs, initializers, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(a, n) for n, a in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _w(*shape) -> np.ndarray:
    return RNG.uniform(-0.5, 0.5, shape).astype(np.float32)


def mlp_dropout() -> onnx.ModelProto:
    """Three MatMul+Add layers, each followed by inference Dropout and Identity, BatchNorm after the first."""
    nodes, inits, x = [], {}, "input"
    for i, (k, n) in enumerate([(64, 128), (128, 128), (128, 10)]):
        inits.update({f"w{i}": _w(k, n), f"b{i}": _w(n), f"ratio{i}": np.array(0.1, np.float32),
                      f"train{i}": np.array(False)})
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"fc{i}"])]
        y = f"fc{i}"
        if i == 0:
            inits.update({"g": _w(n) + 1, "be": _w(n), "mu": _w(n), "var": _w(n) + 1})
            nodes.append(helper.make_node("BatchNormalization", [y, "g", "be", "mu", "var"], ["bn"]))
            y = "bn"
        if i < 2:
            nodes += [helper.make_node("Relu", [y], [f"r{i}"]),
                      helper.make_node("Dropout", [f"r{i}", f"ratio{i}", f"train{i}"], [f"d{i}"]),
                      helper.make_node("Identity", [f"d{i}"], [f"h{i}"])]
            x = f"h{i}"
        else:
            nodes.append(helper.make_node("Identity", [y], ["output"]))
    return _model(nodes, {"input": ["batch", 64]}, ["output"], inits)


def const_and_transposes() -> onnx.ModelProto:
    """NHWC <-> NCHW transpose pairs around convs and activations, weights computed by constant subgraphs."""
    inits = {"w_raw": _w(3, 3, 8, 16), "scale": np.array(0.5, np.float32), "b1": _w(16), "b2": _w(16),
             "w2": _w(16, 16, 1, 1), "shape": np.array([0, -1], np.int64), "shape_back": np.array([0, 16, 8, 8],
                                                                                                   np.int64)}
    nodes = [
        # weight = Transpose(w_raw * scale) to OIHW, and a bias duplicated under two names
        helper.make_node("Mul", ["w_raw", "scale"], ["w_scaled"]),
        helper.make_node("Transpose", ["w_scaled"], ["w1"], perm=[3, 2, 0, 1]),
        helper.make_node("Add", ["b1", "b2"], ["b_sum"]),
        helper.make_node("Sub", ["b_sum", "b2"], ["b_sum_minus"]),
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c1"], ["c1_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Relu", ["c1_nhwc"], ["r1"]),
        helper.make_node("Transpose", ["r1"], ["r1_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["r1_nchw", "w2", "b_sum_minus"], ["c2"]),
        helper.make_node("Reshape", ["c2", "shape"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape_back"], ["c2_back"]),
        helper.make_node("Transpose", ["c2_back"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2]),
        helper.make_node("Sigmoid", ["t2"], ["s"]),
        helper.make_node("Transpose", ["s"], ["output"], perm=[0, 2, 3, 1]),
    ]
    return _model(nodes, {"input": ["batch", 8, 8, 8]}, ["output"], inits)


BUILT = {"resnet-blocks": resnet_blocks, "mobilenet-dw": mobilenet_depthwise, "mlp-dropout": mlp_dropout,
         "const-transpose": const_and_transposes}


def zoo_models() -> dict:
    """Every zoo entry, exported with BatchNorm kept; empty when the zoo cannot be imported."""
    try:
        from edgec.zoo.registry import ZOO
    except ImportError:
        return {}
    return {f"zoo:{name}": (lambda e=entry: _torch_export(e.build(), e.input_shape)) for name, entry in ZOO.items()}


def real_models() -> dict:
    """The real-model suite (edgec.zoo.real), each model from both PyTorch exporters at its static shapes."""
    from edgec.frontend.export import export_module
    from edgec.zoo import real

    def build(name: str, exporter: str) -> onnx.ModelProto:
        module, inputs = real.build(name)
        with tempfile.TemporaryDirectory() as tmp:
            return onnx.load(export_module(module, inputs, Path(tmp) / "m.onnx", exporter=exporter))

    return {f"real:{name} ({exporter})": (lambda n=name, e=exporter: build(n, e))
            for name in real.MODELS for exporter in ("torchscript", "dynamo")}


def edgec_optimize(model: onnx.ModelProto) -> onnx.ModelProto:
    return run_pipeline(model, DEFAULT_PIPELINE, PassContext(validate=False))[0]


def onnxslim_optimize(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(onnx.ModelProto.FromString(model.SerializeToString()))


def ort_basic_optimize(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


TOOLS = {"edgec": edgec_optimize, "onnxslim": onnxslim_optimize, "ort-basic": ort_basic_optimize}


def measure(model: onnx.ModelProto, repeat: int) -> dict:
    feeds = random_inputs(input_specs(model))
    reference = Reference(model).run(feeds)
    row = {"nodes_in": len(model.graph.node)}
    for tool, optimize in TOOLS.items():
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            optimized = optimize(model)
            times.append(time.perf_counter() - start)
        outputs = Reference(optimized).run(feeds)
        row[tool] = {"nodes": len(optimized.graph.node), "ms": 1e3 * statistics.median(times),
                     "max_abs_err": max(errors(outputs[k], reference[k]).max_abs_err for k in reference)}
    return row


def markdown(rows: dict) -> str:
    lines = ["| model | nodes in | edgec | onnxslim | ORT basic | edgec ms | onnxslim ms | ORT basic ms | "
             "edgec max abs err | edgec ≤ best peer |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for name, r in rows.items():
        best_peer = min(r["onnxslim"]["nodes"], r["ort-basic"]["nodes"])
        lines.append(f"| {name} | {r['nodes_in']} | {r['edgec']['nodes']} | {r['onnxslim']['nodes']} | "
                     f"{r['ort-basic']['nodes']} | {r['edgec']['ms']:.1f} | {r['onnxslim']['ms']:.1f} | "
                     f"{r['ort-basic']['ms']:.1f} | {r['edgec']['max_abs_err']:.1e} | "
                     f"{'yes' if r['edgec']['nodes'] <= best_peer else 'NO'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool and model (median reported)")
    parser.add_argument("--no-zoo", action="store_true", help="only the models built here")
    parser.add_argument("--real", action="store_true",
                        help="also the real-model suite (transformers' BERT, ViT, ResNet-50, ... from both exporters)")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args()
    builders = dict(BUILT, **({} if args.no_zoo else zoo_models()), **(real_models() if args.real else {}))
    warm_up = mlp_dropout()
    for optimize in TOOLS.values():  # one-off imports and rule compilation are not optimize time
        optimize(warm_up)
    rows = {}
    for name, build in builders.items():
        rows[name] = measure(build(), args.repeat)
        print(f"{name}: " + ", ".join(f"{t} {rows[name][t]['nodes']}" for t in TOOLS), file=sys.stderr)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    losses = [n for n, r in rows.items() if r["edgec"]["nodes"] > min(r["onnxslim"]["nodes"], r["ort-basic"]["nodes"])]
    return 1 if losses else 0


if __name__ == "__main__":
    sys.exit(main())
