"""Building blocks shared by the generator and the discriminators (original names kept)."""

from __future__ import annotations

import torch
import torch.nn as nn


class GLU(nn.Module):
    """Gated linear unit over channels: x[:, :C/2] * sigmoid(x[:, C/2:])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nc = x.size(1)
        if nc % 2:
            raise ValueError(f"GLU needs an even number of channels, got {nc}")
        nc //= 2
        return x[:, :nc] * torch.sigmoid(x[:, nc:])


def conv1x1(in_planes: int, out_planes: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, padding=0, bias=bias)


def conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)


def upBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    """Nearest x2 upsampling, then conv3x3 + BN + GLU: [B,in,H,W] -> [B,out,2H,2W]."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        conv3x3(in_planes, out_planes * 2),
        nn.BatchNorm2d(out_planes * 2),
        GLU(),
    )


class ResBlock(nn.Module):
    def __init__(self, channel_num: int):
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(channel_num, channel_num * 2),
            nn.BatchNorm2d(channel_num * 2),
            GLU(),
            conv3x3(channel_num, channel_num),
            nn.BatchNorm2d(channel_num),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + x


def Block3x3_leakRelu(in_planes: int, out_planes: int) -> nn.Sequential:
    """Keeps the spatial size."""
    return nn.Sequential(conv3x3(in_planes, out_planes), nn.BatchNorm2d(out_planes), nn.LeakyReLU(0.2, inplace=True))


def downBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    """Halves the spatial size."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 4, 2, 1, bias=False),
        nn.BatchNorm2d(out_planes),
        nn.LeakyReLU(0.2, inplace=True),
    )


def encode_image_by_16times(ndf: int) -> nn.Sequential:
    """[B,3,H,W] -> [B,8ndf,H/16,W/16]."""
    return nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 8),
        nn.LeakyReLU(0.2, inplace=True),
    )


def weights_init(m: nn.Module) -> None:
    """The original G/D initialisation, by class name (use with ``net.apply``).

    Conv* and Linear weights orthogonal (gain 1), Linear bias 0; BatchNorm* weight
    N(1, 0.02), bias 0. Conv biases keep PyTorch's default, as in the original.
    """
    classname = m.__class__.__name__
    if "Conv" in classname:
        nn.init.orthogonal_(m.weight.data, 1.0)
    elif "BatchNorm" in classname:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)
    elif "Linear" in classname:
        nn.init.orthogonal_(m.weight.data, 1.0)
        if m.bias is not None:
            m.bias.data.fill_(0.0)
