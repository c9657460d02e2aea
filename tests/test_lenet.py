"""LeNet end to end: trained accuracy, deterministic training, TVM and ORT logits vs PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgec.runtime as rt
from edgec.metrics.accuracy import top1
from edgec.zoo import data, registry, train


@pytest.fixture(scope="module")
def split():
    return data.digits(28, 1)


@pytest.mark.parametrize("name", ["lenet", "lenet-relu"])
def test_trained_accuracy_on_held_out_split(name, split):
    net = train.load_trained(name)
    acc = top1(train.predict(net, split.x_test), split.y_test)
    assert acc >= 0.95, f"{name} held-out accuracy {acc:.4f} < 0.95"
    assert acc == pytest.approx(train.cached_metrics(name)["test_accuracy"], abs=1e-9)


def test_split_is_fixed_and_stratified(split):
    assert split.x_train.shape == (1437, 1, 28, 28) and split.x_test.shape == (360, 1, 28, 28)
    assert split.x_train.dtype == np.float32 and 0.0 <= split.x_test.min() and split.x_test.max() <= 1.0
    counts = np.bincount(split.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 of each digit
    again = data.digits.__wrapped__(28, 1)
    assert np.array_equal(again.x_test, split.x_test) and np.array_equal(again.y_test, split.y_test)


def test_training_is_deterministic():
    entry = registry.ZooEntry("lenet-short", registry.ZOO["lenet"].build, (1, 1, 28, 28),
                              registry.ZOO["lenet"].load_data, "two epochs", epochs=2, lr=3e-3)
    (a, ma), (b, mb) = train.train(entry, log=None), train.train(entry, log=None)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), f"parameter {ka} differs between two training runs"
    assert ma["test_accuracy"] == mb["test_accuracy"]


@pytest.mark.parametrize("backend", ["tvm", "ort"])
def test_compiled_logits_match_pytorch(backend, lenet_artifacts, split):
    net = train.load_trained("lenet")
    ref = train.predict(net, split.x_test)
    module = rt.load(lenet_artifacts[backend])
    out = np.concatenate([module(split.x_test[i:i + 1])[0] for i in range(len(split.x_test))])
    assert out.shape == (360, 10)
    assert np.abs(out - ref).max() < 1e-4
    assert (out.argmax(1) == ref.argmax(1)).all()
    assert top1(out, split.y_test) >= 0.95


def test_symbolic_batch_runs_whole_split_at_once(lenet_artifacts, split):
    net = train.load_trained("lenet")
    module = rt.load(lenet_artifacts["tvm"])
    assert module.inputs == [("input", ("batch", 1, 28, 28), "float32")]
    out = module.run({"input": split.x_test[:64]})["logits"]
    assert out.shape == (64, 10)
    assert np.abs(out - train.predict(net, split.x_test[:64])).max() < 1e-4
