"""Real architectures from `transformers`' model code (issue 21), for the real-model suite
(benchmarks/real_models.py, tests/test_real_models.py): nothing is downloaded, every model is built from a
config object with random weights under torch.manual_seed(0), in eval mode, with eager attention.

Each builder returns (module, example inputs {name: tensor} in forward's order); the module's forward takes
the inputs positionally and returns the logits, so `edgec.frontend.export.export_module` exports it with
either PyTorch exporter. Inputs are batch 1 at fixed shapes: images float32 [1, 3, 224, 224] (seeded
torch.rand); BERT input_ids / attention_mask (ones) / token_type_ids (zeros), int64 [1, 128], as a BERT
tokenizer returns them; GPT-2 input_ids + attention_mask, int64 [1, 64], no KV cache (with input_ids
alone transformers 5.24 runs a packed-sequence check the TorchScript exporter cannot export: aten::diff).

    from edgec.zoo import real
    module, inputs = real.build("bert")       # the suite's configs: real.MODELS
    module, inputs = real.build("bert-2l")    # 2-layer variants for the fast tests: real.FAST_MODELS

CNN batch norms get a trained network's statistics (see _trained_like): HF's initializers make deep plain
CNNs output ~1e-22 (MobileNetV2) or exactly 0 (EfficientNet-B0), which checks no numerics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

IMAGE_SIZE = 224
IMAGENET_CLASSES = 1000


class ImageClassifier(nn.Module):
    """pixel_values -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


class SequenceClassifier(nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


class CausalLM(nn.Module):
    """(input_ids, attention_mask) -> next-token logits for every position."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def _seeded(model_cls, config) -> nn.Module:
    config._attn_implementation = "eager"  # also set in the config's constructor where it takes it
    torch.manual_seed(0)
    return model_cls(config).eval()


def _image_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)}


def _trained_like(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give BatchNorm layers a trained network's statistics, so activations neither vanish nor explode.

    HF's initializers (conv weights N(0, 0.02), running_var 1, EfficientNet's BN scales N(0, 0.015)) make deep
    plain CNNs output ~1e-22 (MobileNetV2) or exactly 0 (EfficientNet-B0): no use for checking numerics, and
    folding a BN with mean 0 / var 1 is a degenerate case. Here each BN gets scale U(0.5, 1.5), shift U(-0.2, 0.2),
    and running mean/var measured on 8 seeded random images (only the BN layers in train mode, cumulative
    average, no dropout / stochastic depth), then everything is back in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in norms:
            bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=generator))
            bn.bias.copy_(0.4 * torch.rand(bn.bias.shape, generator=generator) - 0.2)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average over the calibration batch
            bn.train()
        model(torch.rand(8, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator))
        for bn in norms:
            bn.momentum = 0.1
    return model.eval()


def _image(model_cls, config) -> tuple[nn.Module, dict]:
    inputs = _image_inputs()
    return _trained_like(ImageClassifier(_seeded(model_cls, config)).eval()), inputs


def bert(num_layers: int = 4, seq_len: int = 128, seed: int = 0) -> tuple[nn.Module, dict]:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(hidden_size=256, num_hidden_layers=num_layers, num_attention_heads=4, intermediate_size=1024,
                        num_labels=2, attn_implementation="eager")
    model = SequenceClassifier(_seeded(BertForSequenceClassification, config)).eval()
    generator = torch.Generator().manual_seed(seed)
    inputs = {"input_ids": torch.randint(0, config.vocab_size, (1, seq_len), generator=generator),
              "attention_mask": torch.ones(1, seq_len, dtype=torch.int64),
              "token_type_ids": torch.zeros(1, seq_len, dtype=torch.int64)}
    return model, inputs


def vit_tiny(num_layers: int = 12) -> tuple[nn.Module, dict]:
    """DeiT-tiny's shape (facebook/deit-tiny-patch16-224 is a ViTForImageClassification checkpoint)."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(hidden_size=192, num_hidden_layers=num_layers, num_attention_heads=3, intermediate_size=768,
                       image_size=IMAGE_SIZE, patch_size=16, num_labels=IMAGENET_CLASSES, attn_implementation="eager")
    return _image(ViTForImageClassification, config)


def resnet50() -> tuple[nn.Module, dict]:
    from transformers import ResNetConfig, ResNetForImageClassification

    return _image(ResNetForImageClassification, ResNetConfig(num_labels=IMAGENET_CLASSES))  # defaults = ResNet-50


def convnext_tiny() -> tuple[nn.Module, dict]:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    # defaults = ConvNeXt-T; layer scale 0.5 instead of 1e-6, so each block's branch shows in the output (trained
    # ConvNeXt-T scales are of order 0.1-1; any value > 0 gives the same graph)
    config = ConvNextConfig(num_labels=IMAGENET_CLASSES, layer_scale_init_value=0.5)
    return _image(ConvNextForImageClassification, config)


def mobilenet_v2() -> tuple[nn.Module, dict]:
    """HF's MobileNetV2 keeps TF's "SAME" padding (tf_padding=True): pads computed from the input's shape."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return _image(MobileNetV2ForImageClassification, MobileNetV2Config(num_labels=IMAGENET_CLASSES))


def efficientnet_b0() -> tuple[nn.Module, dict]:
    from transformers import EfficientNetConfig, EfficientNetForImageClassification

    config = EfficientNetConfig(width_coefficient=1.0, depth_coefficient=1.0, image_size=IMAGE_SIZE, hidden_dim=1280,
                                num_labels=IMAGENET_CLASSES)  # EfficientNetConfig() alone is B7
    return _image(EfficientNetForImageClassification, config)


def gpt2(num_layers: int = 4, seq_len: int = 64, seed: int = 0, vocab_size: int = 50257) -> tuple[nn.Module, dict]:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=num_layers, vocab_size=vocab_size, use_cache=False, attn_implementation="eager")
    model = CausalLM(_seeded(GPT2LMHeadModel, config)).eval()
    generator = torch.Generator().manual_seed(seed)
    inputs = {"input_ids": torch.randint(0, config.vocab_size, (1, seq_len), generator=generator),
              "attention_mask": torch.ones(1, seq_len, dtype=torch.int64)}
    return model, inputs


# The suite (issue 21's configs), then the fast tests' 2-layer variants of the transformer configs; the fast
# GPT-2 also has a 2048-token vocabulary (its 50257 x 768 LM head alone takes a minute to compile here).
MODELS: dict[str, Callable[[], tuple[nn.Module, dict]]] = {
    "bert": bert,
    "vit-tiny": vit_tiny,
    "resnet50": resnet50,
    "convnext-tiny": convnext_tiny,
    "mobilenet-v2": mobilenet_v2,
    "efficientnet-b0": efficientnet_b0,
    "gpt2": gpt2,
}
FAST_MODELS: dict[str, Callable[[], tuple[nn.Module, dict]]] = {
    "bert-2l": lambda: bert(num_layers=2),
    "vit-tiny-2l": lambda: vit_tiny(num_layers=2),
    "gpt2-2l": lambda: gpt2(num_layers=2, vocab_size=2048),
}


def build(name: str) -> tuple[nn.Module, dict]:
    """(module, example inputs) of a suite model or a fast variant."""
    builders = {**MODELS, **FAST_MODELS}
    if name not in builders:
        raise KeyError(f"unknown model '{name}'; choose from {', '.join(builders)}")
    return builders[name]()
