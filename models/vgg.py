"""VGG-11 (d2l's VGG blocks), widths scaled by 1/4 for 32x32 digits."""

from torch import nn

VGG11 = ((1, 16), (1, 32), (2, 64), (2, 128), (2, 128))  # (convs, channels) per block


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """`num_convs` 3x3 convs with ReLU, then a 2x2 max pool halving height and width."""
    layers = []
    for i in range(num_convs):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size=3, padding=1),
                   nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(kernel_size=2, stride=2))


def vgg(arch=VGG11, num_classes: int = 10) -> nn.Sequential:
    """VGG blocks (32 -> 1 px), adaptive avg pool, two dropout FC layers of 256."""
    blocks, channels = [], 3
    for num_convs, out_channels in arch:
        blocks.append(vgg_block(num_convs, channels, out_channels))
        channels = out_channels
    return nn.Sequential(
        *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(channels, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, num_classes),
    )
