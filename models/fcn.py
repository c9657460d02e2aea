"""Fully convolutional network (d2l's FCN): a ResNet body, 1x1 class conv, ConvTranspose upsampling."""

import torch
from torch import nn

from edgec.zoo.resnet import Residual


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """ConvTranspose weights that upsample each channel bilinearly (the usual FCN initialisation)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(kernel_size, dtype=torch.float32) - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = ramp[:, None] * ramp[None, :]
    return weight


def fcn(num_classes: int = 11, width: int = 32) -> nn.Sequential:
    """Stride-4 residual body, 1x1 conv to class scores, 4x transposed conv back to the input size."""
    upsample = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=8, stride=4, padding=2)
    with torch.no_grad():
        upsample.weight.copy_(bilinear_kernel(num_classes, 8))
        upsample.bias.zero_()
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        Residual(width, width), Residual(width, 2 * width, stride=2), Residual(2 * width, 2 * width),
        nn.Conv2d(2 * width, num_classes, 1),
        upsample,
    )
