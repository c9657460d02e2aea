"""AlexNet (d2l), widths scaled by 1/4 for 96x96 digits; adaptive pooling lets larger inputs through."""

from torch import nn


def alexnet(num_classes: int = 10) -> nn.Sequential:
    """Five convs (11/5/3/3/3, ReLU, three max pools), adaptive avg pool, two dropout FC layers."""
    return nn.Sequential(
        nn.Conv2d(3, 24, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(24, 64, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 96, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(96, 96, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(96, 64, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, num_classes),
    )
