"""Graph passes on models exported from PyTorch: TorchScript with BatchNorm kept (TrainingMode.PRESERVE)
and the dynamo exporter's unoptimized output. After the default pipeline no BatchNormalization, Identity
or Dropout is left, and outputs match both the exported model and PyTorch within 1e-5."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from test_passes import assert_same_outputs, ops, optimize

from edgec.frontend.reference import Reference


class Net(torch.nn.Module):
    """A residual block, a depthwise-separable block, ConvTranspose, Linear + BatchNorm1d, Dropout."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                                nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.up = nn.Sequential(nn.ConvTranspose2d(16, 8, 2, stride=2), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.Linear(8, 10), nn.BatchNorm1d(10), nn.Dropout(0.3), nn.Linear(10, 4))

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.res(x))
        x = self.up(self.dw(x))
        return self.head(x.mean(dim=(2, 3)))


def make_net(random_stats: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    net = Net()
    if random_stats:  # fresh stats (mean 0, var 1, gamma 1, beta 0) make the exporter share them via Identity
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def export(net: torch.nn.Module, path, dynamo: bool) -> onnx.ModelProto:
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (x,), str(path), input_names=["input"], output_names=["logits"], dynamo=True,
                              optimize=False, opset_version=18, verbose=False)
        else:
            torch.onnx.export(net, (x,), str(path), input_names=["input"], output_names=["logits"], dynamo=False,
                              training=torch.onnx.TrainingMode.PRESERVE, opset_version=17,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return onnx.load(str(path))


EXPECTED = {"Add": 1, "Clip": 1, "Conv": 5, "ConvTranspose": 1, "Gemm": 2, "ReduceMean": 1, "Relu": 3}


@pytest.mark.parametrize("random_stats", [False, True])
def test_preserve_export_is_cleaned_and_keeps_numbers(tmp_path, random_stats):
    net = make_net(random_stats)
    model = export(net, tmp_path / "m.onnx", dynamo=False)
    assert ops(model)["BatchNormalization"] == 7
    assert ops(model).get("Identity", 0) == (0 if random_stats else 22)
    out = optimize(model, model_path=str(tmp_path / "m.onnx"))
    assert ops(out) == EXPECTED
    assert_same_outputs(model, out)
    x = np.random.default_rng(3).standard_normal((3, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert np.abs(Reference(out).run({"input": x})["logits"] - expected).max() <= 1e-5


def test_dynamo_export_is_cleaned_and_keeps_numbers(tmp_path):
    net = make_net(random_stats=True)
    model = export(net, tmp_path / "d.onnx", dynamo=True)
    assert ops(model)["BatchNormalization"] == 7
    out = optimize(model)
    assert {"BatchNormalization", "Identity", "Dropout"}.isdisjoint(ops(out))
    assert ops(out) == EXPECTED
    assert_same_outputs(model, out)
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert np.abs(Reference(out).run({"input": x})["logits"] - expected).max() <= 1e-5


def _zoo_names() -> list:
    try:
        from edgec.zoo.registry import ZOO
    except ImportError:
        return []
    return list(ZOO)


FAST_ZOO = {"resnet18", "mobilenetv2", "densenet"}  # BN after Conv, depthwise, and BN that cannot fuse
FUSABLE = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST_ZOO else pytest.mark.slow)
                                  for n in _zoo_names()])
def test_zoo_model_is_cleaned_and_keeps_numbers(tmp_path, name):
    """Untrained zoo nets with non-trivial BN statistics; a BN may stay only where fusion is illegal."""
    from edgec.zoo.registry import ZOO

    torch.manual_seed(0)
    net = ZOO[name].build().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(*ZOO[name].input_shape)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), input_names=["input"], dynamo=False, opset_version=17,
                          training=torch.onnx.TrainingMode.PRESERVE)
    model = onnx.load(str(path))
    out = optimize(model, model_path=str(path))
    assert {"Identity", "Dropout"}.isdisjoint(ops(out))
    producers = {o: n for n in out.graph.node for o in n.output}
    consumers = [i for n in out.graph.node for i in n.input] + [o.name for o in out.graph.output]
    for bn in (n for n in out.graph.node if n.op_type == "BatchNormalization"):
        producer = producers.get(bn.input[0])
        assert producer is None or producer.op_type not in FUSABLE or consumers.count(bn.input[0]) > 1, bn.name
    assert_same_outputs(model, out)
