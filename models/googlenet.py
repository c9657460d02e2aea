"""GoogLeNet (d2l): nine Inception blocks in five stages, widths scaled by 1/4 for 64x64 digits."""

import torch
from torch import nn


class Inception(nn.Module):
    """Four parallel paths (1x1; 1x1->3x3; 1x1->5x5; 3x3 max pool->1x1) concatenated on channels."""

    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int):
        super().__init__()
        self.p1 = nn.Sequential(nn.Conv2d(in_channels, c1, 1), nn.ReLU())
        self.p2 = nn.Sequential(nn.Conv2d(in_channels, c2[0], 1), nn.ReLU(),
                                nn.Conv2d(c2[0], c2[1], 3, padding=1), nn.ReLU())
        self.p3 = nn.Sequential(nn.Conv2d(in_channels, c3[0], 1), nn.ReLU(),
                                nn.Conv2d(c3[0], c3[1], 5, padding=2), nn.ReLU())
        self.p4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, c4, 1), nn.ReLU())
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.p1(x), self.p2(x), self.p3(x), self.p4(x)], dim=1)


def _stage(in_channels: int, specs) -> tuple[nn.Sequential, int]:
    blocks = []
    for spec in specs:
        blocks.append(Inception(in_channels, *spec))
        in_channels = blocks[-1].out_channels
    return nn.Sequential(*blocks), in_channels


def googlenet(num_classes: int = 10) -> nn.Sequential:
    """Stem (7x7 conv, 1x1 + 3x3 convs), Inception stages of 2, 5 and 2 blocks, global avg pool."""
    b1 = nn.Sequential(nn.Conv2d(3, 16, 7, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
    b2 = nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 48, 3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(3, stride=2, padding=1))
    b3, c = _stage(48, [(16, (24, 32), (4, 8), 8), (32, (32, 48), (8, 24), 16)])
    b4, c = _stage(c, [(48, (24, 52), (4, 12), 16), (40, (28, 56), (6, 16), 16), (32, (32, 64), (6, 16), 16),
                       (28, (36, 72), (8, 16), 16), (64, (40, 80), (8, 32), 32)])
    b5, c = _stage(c, [(64, (40, 80), (8, 32), 32), (96, (48, 96), (12, 32), 32)])
    net = nn.Sequential(b1, b2, b3, nn.MaxPool2d(3, stride=2, padding=1), b4, nn.MaxPool2d(3, stride=2, padding=1), b5,
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
    for m in net.modules():  # He init: with PyTorch's default the 22 plain ReLU layers never leave chance level
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net
