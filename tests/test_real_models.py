"""Issue 21: networks we did not write, from `transformers`' model code (configs, seeded random weights,
nothing downloaded), exported with both PyTorch exporters, compile on TVM and ORT and match PyTorch.

Fast: the 2-layer BERT / ViT / GPT-2 variants (edgec.zoo.real.FAST_MODELS). Slow (--runslow): the suite's
seven full configs; benchmarks/real_models.py times them against ONNX Runtime and OpenVINO."""

from __future__ import annotations

import onnx
import pytest

pytest.importorskip("transformers", reason="the real-model suite needs transformers (make setup installs it)")

import edgec.runtime as rt  # noqa: E402
from edgec.compiler import compile_model  # noqa: E402
from edgec.frontend.export import export_module  # noqa: E402
from edgec.metrics.compare import errors  # noqa: E402
from edgec.zoo import real  # noqa: E402

REL_TOL = 1e-4  # max abs error / max |PyTorch output|


def export_and_reference(name: str, exporter: str, path):
    """(ONNX path, {input name: array}, PyTorch's logits)."""
    import torch

    module, inputs = real.build(name)
    with torch.no_grad():
        expected = module(*inputs.values()).numpy()
    export_module(module, inputs, path, exporter=exporter)
    return path, {k: v.numpy() for k, v in inputs.items()}, expected


def check_compiles_and_matches(name: str, exporter: str, backend: str, tmp_path) -> None:
    onnx_path, feeds, expected = export_and_reference(name, exporter, tmp_path / f"{name}.{exporter}.onnx")
    artifact = tmp_path / f"{name}.{backend}.edgec"
    compile_model(onnx_path, "cpu", artifact, backend=backend)
    got = rt.load(artifact).run(feeds)["logits"]
    assert got.shape == expected.shape
    rel_err = errors(got, expected).rel_err
    assert rel_err <= REL_TOL, (name, exporter, backend, rel_err)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", sorted(real.FAST_MODELS))
def test_fast_variant_compiles_on_tvm_and_matches_pytorch(name, exporter, tmp_path):
    check_compiles_and_matches(name, exporter, "tvm", tmp_path)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_bert_compiles_on_ort_and_matches_pytorch(exporter, tmp_path):
    check_compiles_and_matches("bert-2l", exporter, "ort", tmp_path)


def test_torchscript_bert_shape_chains_fold_to_constants(tmp_path):
    """The TorchScript BERT failed TVM's import ("broadcast_to expects ... ndim"): its attention mask is built
    from Shape -> Gather -> ConstantOfShape chains. At static shapes they all fold: no Shape or ConstantOfShape is
    left, and the node count is at most onnxslim's (which takes the shapes by its own option)."""
    import onnxslim

    from edgec.frontend.loader import load_model
    from edgec.passes import DEFAULT_PIPELINE, PassContext, run_pipeline

    onnx_path, feeds, _ = export_and_reference("bert-2l", "torchscript", tmp_path / "bert.onnx")
    raw = onnx.load(onnx_path)
    assert {"Shape", "ConstantOfShape"} <= {n.op_type for n in raw.graph.node}
    optimized, _ = run_pipeline(load_model(onnx_path), DEFAULT_PIPELINE, PassContext(model_path=str(onnx_path)))
    ops = {n.op_type for n in optimized.graph.node}
    assert not ops & {"Shape", "ConstantOfShape", "Expand"}, ops
    slim = onnxslim.slim(raw, input_shapes=[f"{k}:{','.join(map(str, v.shape))}" for k, v in feeds.items()])
    assert len(optimized.graph.node) <= len(slim.graph.node) < len(raw.graph.node)


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", sorted(real.MODELS))
def test_suite_model_compiles_on_tvm_and_matches_pytorch(name, exporter, tmp_path):
    check_compiles_and_matches(name, exporter, "tvm", tmp_path)
