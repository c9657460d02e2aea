"""ResNet-18 (d2l): residual blocks with BatchNorm, widths scaled by 1/4 for 64x64 digits."""

import torch
from torch import nn
from torch.nn import functional as F


class Residual(nn.Module):
    """Two 3x3 conv+BN layers plus the input (through a strided 1x1 conv when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, stride=stride)
                         if stride != 1 or in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


def stem(in_channels: int, out_channels: int) -> nn.Sequential:
    """7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max pool: a quarter of the input resolution."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3), nn.BatchNorm2d(out_channels),
                         nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))


def resnet_stage(in_channels: int, out_channels: int, num_blocks: int, first_stage: bool = False) -> nn.Sequential:
    """`num_blocks` residual blocks; all but the first stage halve the resolution in their first block."""
    blocks = [Residual(in_channels, out_channels, stride=1 if first_stage else 2)]
    blocks += [Residual(out_channels, out_channels) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


def resnet18(num_classes: int = 10, width: int = 16) -> nn.Sequential:
    """Stem, four stages of two residual blocks (width, 2x, 4x, 8x channels), global avg pool, FC."""
    return nn.Sequential(
        stem(3, width),
        resnet_stage(width, width, 2, first_stage=True),
        resnet_stage(width, 2 * width, 2),
        resnet_stage(2 * width, 4 * width, 2),
        resnet_stage(4 * width, 8 * width, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * width, num_classes),
    )
