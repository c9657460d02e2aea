"""The reference zoo: committed weights meet each network's bar, and every network exports, compiles for
`--target cpu` and matches PyTorch on the held-out split (max |logit diff| <= 1e-4, top-1 agreement 100%).
In bf16 (TVM) a network may flip only near-ties: held-out samples whose PyTorch top-2 logits are within
BF16_NEAR_TIE of the logit range, at most BF16_MAX_FLIPS of them (OpenVINO's bf16 flips the same ones).

ONNX Runtime covers every network in the default run; TVM compiles a fast subset here (one of each kind:
plain CNN, recurrent via the lower_rnn lowering, attention) and every network under `--runslow`.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgec import runtime
from edgec.compiler import compile_model
from edgec.frontend.export import export_onnx, resolve_exportable
from edgec.metrics.accuracy import top1
from edgec.zoo import registry, train

NAMES = ["lenet", "lenet-relu", "alexnet", "vgg", "nin", "googlenet", "resnet18", "densenet", "mobilenetv2", "fcn",
         "gru", "lstm", "transformer"]
CNNS = ["alexnet", "vgg", "nin", "googlenet", "resnet18", "densenet", "mobilenetv2", "fcn"]
TVM_FAST = ["lenet-relu", "lstm", "transformer"]
BF16_FAST = ["lenet-relu", "resnet18", "mobilenetv2", "transformer"]
BF16_NEAR_TIE = 0.01  # top-2 margin, as a fraction of the largest |logit|: bf16 rounds operands to 2^-9
BF16_MAX_FLIPS = 0.003  # of the held-out samples (1 in 360 digits)
MAX_WEIGHT_BYTES = 5 << 20
ATOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (ONNX path, test inputs, PyTorch outputs, labels), exported once per module."""
    root = tmp_path_factory.mktemp("zoo")
    cache = {}

    def get(name: str):
        if name not in cache:
            entry = registry.get(name)
            net = train.load_trained(name)
            split = entry.load_data()
            path = export_onnx(net, entry.input_shape, root / f"{name}.onnx", output_names=entry.output_names)
            cache[name] = (path, split.x_test, train.predict(net, split.x_test), split.y_test)
        return cache[name]

    return get


def test_zoo_lists_every_reference_network():
    assert set(NAMES) <= set(registry.ZOO)


@pytest.mark.parametrize("name", NAMES)
def test_committed_weights_meet_the_bar(name):
    entry = registry.get(name)
    metrics = train.cached_metrics(name)
    assert metrics is not None, f"models/weights/{name}.json missing: run `edgec zoo train {name}`"
    assert metrics["architecture"] == train.architecture_key(entry.build()), "weights are stale for this network"
    assert (train.WEIGHTS_DIR / f"{name}.pt").stat().st_size <= MAX_WEIGHT_BYTES
    assert metrics["test_accuracy"] >= entry.min_accuracy
    if entry.min_miou is not None:
        assert metrics["test_miou"] >= entry.min_miou


@pytest.mark.parametrize("name", NAMES)
def test_pytorch_reproduces_recorded_accuracy(name, exported):
    _, _, outputs, labels = exported(name)
    assert top1(outputs, labels) == pytest.approx(train.cached_metrics(name)["test_accuracy"], abs=1e-9)


def _compare(path, x, reference, labels, backend, tmp_path):
    result = compile_model(path, target="cpu", output=tmp_path / f"model-{backend}.edgec", backend=backend)
    module = runtime.load(result.path)
    outputs = np.concatenate([module(x[i:i + 128])[0] for i in range(0, len(x), 128)])
    assert outputs.shape == reference.shape
    assert np.abs(outputs - reference).max() <= ATOL
    assert (outputs.argmax(axis=1) == reference.argmax(axis=1)).all()
    assert top1(outputs, labels) == top1(reference, labels)
    return result


@pytest.mark.parametrize("name", NAMES)
def test_ort_matches_pytorch(name, exported, tmp_path):
    _compare(*exported(name), "ort", tmp_path)


@pytest.mark.parametrize("name", TVM_FAST)
def test_tvm_matches_pytorch(name, exported, tmp_path):
    result = _compare(*exported(name), "tvm", tmp_path)
    recurrent = name in ("gru", "lstm")
    assert result.manifest["backend_config"]["lowered"] == (["lower_rnn"] if recurrent else [])


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n not in TVM_FAST])
def test_tvm_matches_pytorch_full_zoo(name, exported, tmp_path):
    result = _compare(*exported(name), "tvm", tmp_path)
    assert result.manifest["backend_config"]["lowered"] == (["lower_rnn"] if name == "gru" else [])


@pytest.mark.parametrize("name", [n if n in BF16_FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def test_tvm_bf16_flips_only_near_ties(name, exported, tmp_path):
    path, x, reference, labels = exported(name)
    result = compile_model(path, target="cpu", output=tmp_path / "model-bf16.edgec", backend="tvm", precision="bf16")
    module = runtime.load(result.path)
    outputs = np.concatenate([module(x[i:i + 128])[0] for i in range(0, len(x), 128)])
    flipped = outputs.argmax(axis=1) != reference.argmax(axis=1)  # per sample (per pixel for the FCN)
    top2 = np.sort(reference, axis=1)
    margin = np.take(top2, -1, axis=1) - np.take(top2, -2, axis=1)
    assert np.all(margin[flipped] < BF16_NEAR_TIE * np.abs(reference).max())
    assert flipped.mean() <= BF16_MAX_FLIPS


@pytest.mark.parametrize("name", CNNS)
def test_cnns_export_at_imagenet_size(name, tmp_path):
    net, _, output_names = resolve_exportable(name)
    path = export_onnx(net, (1, 3, 224, 224), tmp_path / f"{name}.onnx", output_names=output_names)
    x = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
    (out,) = ort.InferenceSession(str(path)).run(None, {"input": x})
    expected = (2, 11, 224, 224) if name == "fcn" else (2, 10)
    assert out.shape == expected
    np.testing.assert_allclose(out, train.predict(net, x), atol=ATOL)


@pytest.fixture
def stale_weights(tmp_path, monkeypatch):
    """A copy of models/weights/ where lenet's metrics name another architecture, as after a code change."""
    import json
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(train.WEIGHTS_DIR, weights)
    metrics = json.loads((weights / "lenet.json").read_text())
    (weights / "lenet.json").write_text(json.dumps(dict(metrics, architecture="0123456789abcdef")))
    monkeypatch.setattr(train, "WEIGHTS_DIR", weights)
    return weights


def _tree(root) -> dict:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_stale_weights_are_an_error_naming_the_retrain_command(stale_weights):
    before = _tree(stale_weights)
    with pytest.raises(Exception) as e:
        train.load_trained("lenet")
    key = train.architecture_key(registry.get("lenet").build())
    assert str(e.value) == (f"zoo network 'lenet': lenet.pt was trained for another architecture (weights "
                            f"0123456789abcdef, code {key}); retrain it with `edgec zoo train lenet` "
                            "(deterministic; commit models/weights/lenet.*)")
    assert _tree(stale_weights) == before  # nothing retrained, nothing rewritten


def test_export_with_stale_weights_fails_and_writes_nothing(stale_weights, tmp_path, capsys):
    from edgec.cli import main

    before = _tree(stale_weights)
    assert main(["export", "lenet", "-o", str(tmp_path / "lenet.onnx")]) == 2
    assert "retrain it with `edgec zoo train lenet`" in capsys.readouterr().err
    assert not (tmp_path / "lenet.onnx").exists() and _tree(stale_weights) == before


def test_missing_weights_are_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(Exception, match=r"^zoo network 'lenet' has no trained weights in .*; retrain it with "
                                        r"`edgec zoo train lenet`"):
        train.load_trained("lenet")
