"""Network in Network (d2l): NiN blocks and global average pooling, widths scaled by 1/4 for 96x96."""

from torch import nn


def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
              hidden: int | None = None, last_relu: bool = True) -> nn.Sequential:
    """One spatial conv and two 1x1 convs (the per-pixel MLP, `hidden` wide), with ReLU (the last optionally)."""
    hidden = hidden or out_channels
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size, stride, padding), nn.ReLU(),
        nn.Conv2d(hidden, hidden, kernel_size=1), nn.ReLU(),
        nn.Conv2d(hidden, out_channels, kernel_size=1), *([nn.ReLU()] if last_relu else []),
    )


def nin(num_classes: int = 10) -> nn.Sequential:
    """Four NiN blocks with max pools; the last maps to one channel per class, averaged over the image.

    As in the NiN paper's CIFAR model, the last block's MLP keeps the previous width and only its final
    1x1 conv narrows to the classes, which is left linear: d2l's 10-wide ReLU layers (and a ReLU on the
    class maps) let whole digits die, leaving half of the set never predicted.
    """
    net = nn.Sequential(
        nin_block(3, 24, kernel_size=11, stride=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(24, 64, kernel_size=5, stride=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(64, 96, kernel_size=3, stride=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(96, num_classes, kernel_size=3, stride=1, padding=1, hidden=96, last_relu=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    for m in net.modules():  # He init: PyTorch's default is too small for 12 plain ReLU layers to train quickly
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net
