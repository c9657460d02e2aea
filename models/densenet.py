"""DenseNet (d2l): dense blocks joined by transition blocks, scaled for 64x64 digits."""

import torch
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN, ReLU, 3x3 conv: DenseNet's pre-activation layer."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1))


class DenseBlock(nn.Module):
    """Each conv block sees the concatenation of the block input and every earlier block's output."""

    def __init__(self, num_convs: int, in_channels: int, growth_rate: int):
        super().__init__()
        self.net = nn.ModuleList(conv_block(in_channels + i * growth_rate, growth_rate) for i in range(num_convs))
        self.out_channels = in_channels + num_convs * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.net:
            x = torch.cat([x, block(x)], dim=1)
        return x


def transition_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN, ReLU, 1x1 conv to fewer channels, 2x2 average pool halving the resolution."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(), nn.Conv2d(in_channels, out_channels, 1),
                         nn.AvgPool2d(2, stride=2))


def densenet(num_classes: int = 10, growth_rate: int = 16, convs_per_block=(4, 4, 4, 4)) -> nn.Sequential:
    """Stem (7x7 conv, BN, ReLU, max pool), four dense blocks with halving transitions, global avg pool."""
    channels = 2 * growth_rate
    layers: list[nn.Module] = [nn.Conv2d(3, channels, 7, stride=2, padding=3), nn.BatchNorm2d(channels), nn.ReLU(),
                               nn.MaxPool2d(3, stride=2, padding=1)]
    for i, num_convs in enumerate(convs_per_block):
        block = DenseBlock(num_convs, channels, growth_rate)
        layers.append(block)
        channels = block.out_channels
        if i != len(convs_per_block) - 1:
            layers.append(transition_block(channels, channels // 2))
            channels //= 2
    layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)
