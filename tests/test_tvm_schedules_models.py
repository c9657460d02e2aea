"""Full-size CNNs through edgec's CPU pipeline: numerics vs ONNX Runtime and PyTorch, compile time.

Slow (each compiles a 224x224 network): run with `pytest --runslow`.
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
import pytest

from edgec.backends.base import CompileOptions
from edgec.backends.tvm import pipelines
from edgec.targets import resolve_target

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("tvm")

COMPILE_BUDGET_S = 20.0


def _networks():
    from edgec.zoo import lenet, mobilenet, resnet

    return {
        "lenet": (lenet.lenet, (1, 1, 28, 28)),
        "resnet18-224": (lambda: resnet.resnet18(num_classes=1000, width=64), (1, 3, 224, 224)),
        "mobilenetv2-224": (lambda: mobilenet.mobilenetv2(num_classes=1000, width=1.0, last_channels=1280),
                            (1, 3, 224, 224)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet", "resnet18-224", "mobilenetv2-224"])
def test_network_matches_onnxruntime_and_pytorch(name, tmp_path):
    import onnx
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    build, shape = _networks()[name]
    torch.manual_seed(0)
    net = build().eval()
    x = torch.rand(*shape)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(net, x, str(path), opset_version=17, dynamo=False, input_names=["x"], output_names=["y"])
    with torch.no_grad():
        reference = net(x).numpy()
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]

    target = resolve_target("cpu")
    mod = from_onnx(onnx.load(str(path)), keep_params_in_input=False)
    start = time.perf_counter()
    executable = tvm.compile(mod, target=tvm.target.Target(target.tvm),
                             relax_pipeline=pipelines.relax_pipeline(target, CompileOptions()),
                             tir_pipeline=pipelines.tir_pipeline(target))
    seconds = time.perf_counter() - start
    got = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy())).numpy()

    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=1e-4)
    assert seconds <= COMPILE_BUDGET_S, f"untuned compile took {seconds:.1f} s (budget {COMPILE_BUDGET_S} s)"
