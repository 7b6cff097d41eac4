"""PyTorch definitions of the three MCU-zoo backbones, layer for layer as in the .pkl files.

MCUNet-5fps, MobileNetV2-w0.35 and ProxylessNAS-w0.3 (128x128 RGB input) are stacks of
inverted-residual blocks: optional 1x1 expansion (``pointwise1``), kxk depthwise
(``depthwise``), 1x1 linear projection (``pointwise2``), plus the block input when stride is 1
and the channels are unchanged. Every conv is Conv2d(bias=False) + BatchNorm2d, followed by
ReLU6 except the projection. Then global average pooling and a Linear classifier.

The tables below were read off the published files (``microtrain.frontend.mcu_zoo``) and
are written out so that the networks can be built, with random weights, when the files are
absent; ``tests/test_zoo_nets.py`` checks them against the files when present. The modules
are plain (no data-dependent control flow) so that torch.fx can trace them; the attribute
names (``first_conv``, ``blocks.{i}.pointwise1|depthwise|pointwise2``, ``classifier``)
are the zoo graph's node names.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Block(NamedTuple):
    cin: int
    mid: int  # channels after the expansion; == cin means no pointwise1
    cout: int
    kernel: int
    stride: int


STEM_CHANNELS = 16  # first_conv: 3 -> 16, 3x3, stride 2, in all three models

# (in, expanded, out, depthwise kernel, stride) per block, in order.
MCU_NET_BLOCKS: dict[str, tuple[Block, ...]] = {
    "mcunet-5fps": tuple(Block(*b) for b in [
        (16, 16, 8, 3, 1), (8, 32, 16, 3, 2), (16, 48, 16, 3, 1), (16, 48, 24, 7, 2),
        (24, 120, 24, 3, 1), (24, 120, 40, 3, 2), (40, 160, 40, 7, 1), (40, 160, 48, 5, 1),
        (48, 144, 48, 3, 1), (48, 192, 48, 3, 1), (48, 240, 96, 7, 2), (96, 384, 96, 5, 1),
        (96, 384, 96, 5, 1), (96, 576, 160, 3, 1),
    ]),
    "mbv2-w0.35": tuple(Block(*b) for b in [
        (16, 16, 8, 3, 1), (8, 48, 8, 3, 2), (8, 48, 8, 3, 1), (8, 48, 16, 3, 2),
        (16, 96, 16, 3, 1), (16, 96, 16, 3, 1), (16, 96, 24, 3, 2), (24, 144, 24, 3, 1),
        (24, 144, 24, 3, 1), (24, 144, 24, 3, 1), (24, 144, 32, 3, 1), (32, 192, 32, 3, 1),
        (32, 192, 32, 3, 1), (32, 192, 56, 3, 2), (56, 336, 56, 3, 1), (56, 336, 56, 3, 1),
        (56, 336, 112, 3, 1),
    ]),
    "proxyless-w0.3": tuple(Block(*b) for b in [
        (16, 16, 8, 3, 1), (8, 24, 16, 5, 2), (16, 48, 16, 3, 1), (16, 48, 16, 7, 2),
        (16, 48, 16, 3, 1), (16, 48, 16, 5, 1), (16, 48, 16, 5, 1), (16, 96, 24, 7, 2),
        (24, 72, 24, 5, 1), (24, 72, 24, 5, 1), (24, 72, 24, 5, 1), (24, 144, 32, 5, 1),
        (32, 96, 32, 5, 1), (32, 96, 32, 5, 1), (32, 96, 32, 5, 1), (32, 192, 64, 7, 2),
        (64, 384, 64, 7, 1), (64, 192, 64, 7, 1), (64, 192, 64, 7, 1), (64, 384, 96, 7, 1),
    ]),
}


class ConvBN(nn.Module):
    """Conv2d (no bias, 'same' padding k//2) + BatchNorm2d [+ ReLU6]."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU6() if relu6 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        if self.act is not None:  # fixed at construction, not data-dependent
            x = self.act(x)
        return x


class InvertedResidual(nn.Module):
    def __init__(self, b: Block):
        super().__init__()
        # Without expansion the block starts at the depthwise conv (no pointwise1 module at all).
        self.pointwise1 = ConvBN(b.cin, b.mid, 1) if b.mid != b.cin else None
        self.depthwise = ConvBN(b.mid, b.mid, b.kernel, b.stride, groups=b.mid)
        self.pointwise2 = ConvBN(b.mid, b.cout, 1, relu6=False)
        self.residual = b.stride == 1 and b.cin == b.cout  # fixed at construction: traceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.pointwise1 is None else self.pointwise1(x)
        out = self.pointwise2(self.depthwise(out))
        if self.residual:
            out = out + x
        return out


class MCUNet(nn.Module):
    def __init__(self, blocks: tuple[Block, ...], num_classes: int = 1000):
        super().__init__()
        self.first_conv = ConvBN(3, STEM_CHANNELS, 3, stride=2)
        self.blocks = nn.Sequential(*(InvertedResidual(b) for b in blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(blocks[-1].cout, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.blocks(self.first_conv(x)))))


def build_mcu_net(name: str, num_classes: int = 1000) -> MCUNet:
    """One of ``MCU_NET_BLOCKS``' architectures with random (PyTorch default) weights."""
    if name not in MCU_NET_BLOCKS:
        raise ValueError(f"unknown MCU net {name!r}; choose one of {', '.join(MCU_NET_BLOCKS)}")
    return MCUNet(MCU_NET_BLOCKS[name], num_classes)
