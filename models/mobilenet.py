"""MobileNetV2: inverted residuals with depthwise separable convs and ReLU6, width 0.5 for 64x64 digits."""

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
INVERTED_RESIDUALS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                      (6, 320, 1, 1))


def _round8(channels: float) -> int:
    """Round to a multiple of 8, never below 90% of the request (the paper's `_make_divisible`)."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


def conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                                   groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU6())


class InvertedResidual(nn.Module):
    """1x1 expansion (ReLU6), 3x3 depthwise conv (ReLU6), linear 1x1 projection; skip when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers = [conv_bn_relu6(in_channels, hidden, kernel_size=1)] if expansion != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.block = nn.Sequential(*layers)
        self.use_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_skip else self.block(x)


def mobilenetv2(num_classes: int = 10, width: float = 0.5, last_channels: int = 640) -> nn.Sequential:
    """Stride-2 stem, 17 inverted residual blocks, 1x1 conv to `last_channels`, global avg pool, dropout, FC."""
    channels = _round8(32 * width)
    layers: list[nn.Module] = [conv_bn_relu6(3, channels, stride=2)]
    for t, c, n, s in INVERTED_RESIDUALS:
        out_channels = _round8(c * width)
        for i in range(n):
            layers.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t))
            channels = out_channels
    layers += [conv_bn_relu6(channels, last_channels, kernel_size=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Dropout(0.2), nn.Linear(last_channels, num_classes)]
    return nn.Sequential(*layers)
