"""Residual building blocks and their shortcuts (He et al. 2015, arXiv:1512.03385, Sec. 3.2-3.3, Fig. 2, Fig. 5).

A block learns a residual F(x, {W_i}) and adds its input back:

    y = F(x, {W_i}) + x              (Eq. 1, when F keeps the shape)
    y = F(x, {W_i}) + W_s x          (Eq. 2, when F changes the channels or the resolution)

followed by a ReLU (Fig. 2). W_s is option A (identity with zero-padded channels, no parameters) or option B
(a 1x1 projection, only where the shape changes) of Sec. 3.3. With `residual=False` a block drops the shortcut
and becomes the paper's *plain* counterpart, y = relu(F(x)), identical in every other respect.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

SHORTCUTS = ("A", "B")

# Pluggable parts, so that the normalization papers (batch_norm, group_norm, weight_standardization, evonorm)
# run their experiments on this same network: norm_layer(channels), conv_layer(in, out, kernel_size, stride,
# padding, bias=False), act_layer() -- the defaults are the paper's BN, convolution and ReLU.
NormLayer = Callable[[int], nn.Module]
ConvLayer = Callable[..., nn.Module]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, conv_layer: ConvLayer = nn.Conv2d) -> nn.Module:
    """3x3 convolution, padding 1, no bias (the BN that follows has its own shift)."""
    return conv_layer(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, conv_layer: ConvLayer = nn.Conv2d) -> nn.Module:
    """1x1 convolution, no bias."""
    return conv_layer(in_channels, out_channels, 1, stride=stride, padding=0, bias=False)


class ZeroPadShortcut(nn.Module):
    r"""Option A shortcut (Sec. 3.3): identity mapping, with extra zero entries padded for increasing dimensions.

    When the shortcut goes across feature maps of two sizes it is performed with a stride of 2, i.e. it keeps
    every second pixel; the new channels are zeros appended after the input's:

        W_s x = [x[:, :, ::s, ::s], 0]

    It has no parameters, so a ResNet with option A has exactly the parameters of its plain twin (Sec. 4.1:
    "no extra parameter compared to the plain counterparts"). This is the shortcut of the CIFAR nets (Sec. 4.2).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A can only add channels, got {in_channels} -> {out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C_in, H, W)
        x = x[:, :, :: self.stride, :: self.stride]                          # (B, C_in, H/s, W/s)
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))  # (B, C_out, H/s, W/s)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def projection_shortcut(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Option B shortcut (Sec. 3.3, Eq. 2): W_s is a 1x1 convolution with stride s, followed by BN (Sec. 3.4)."""
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The shortcut of Eq. 1 (identity) where the shape is kept, else option `kind` ("A" or "B") of Eq. 2."""
    if kind not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {kind!r}")
    if in_channels == out_channels and stride == 1:
        return nn.Identity()                                                 # Eq. 1
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return projection_shortcut(in_channels, out_channels, stride)


class BasicBlock(nn.Module):
    r"""The two-layer building block (Fig. 2, Fig. 5 left) of ResNet-18/34 and of the CIFAR nets (Sec. 4.2).

    Two 3x3 convolutions, BN right after each one and before the activation (Sec. 3.4):

        F(x) = BN(W_2 * relu(BN(W_1 * x))),    y = relu(F(x) + W_s x)

    The first convolution carries the stride when the block halves the resolution. `residual=False` gives the
    plain block y = relu(F(x)).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "B", residual: bool = True,
                 norm_layer: NormLayer = nn.BatchNorm2d, conv_layer: ConvLayer = nn.Conv2d,
                 act_layer: Callable[[], nn.Module] = nn.ReLU):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride, conv_layer)
        self.bn1 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels, 1, conv_layer)
        self.bn2 = norm_layer(channels)
        self.relu = act_layer()
        self.shortcut = make_shortcut(shortcut, in_channels, channels, stride) if residual else None

    @property
    def last_bn(self) -> nn.Module:
        """The BN that ends F; its gamma = 0 makes the block the identity (or plain: zero)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C_in, H, W)
        f = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))         # F(x, {W_1, W_2}), (B, C, H/s, W/s)
        if self.shortcut is not None:
            f = f + self.shortcut(x)                                         # Eq. 1 / Eq. 2
        return self.relu(f)


class Bottleneck(nn.Module):
    r"""The three-layer bottleneck building block (Fig. 5 right, Sec. 4.1) of ResNet-50/101/152.

    A 1x1 convolution reduces the channels, a 3x3 convolution works at the reduced width, a 1x1 convolution
    restores them (x `expansion` = 4), BN after each:

        F(x) = BN(W_3 * relu(BN(W_2 * relu(BN(W_1 * x))))),    y = relu(F(x) + W_s x)

    Where the block halves the resolution, the stride sits on the 3x3 convolution as in torchvision ("ResNet
    v1.5"); the paper's original models put it on the first 1x1 convolution (`stride_in_1x1=True`). The
    parameter count is the same either way.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "B", residual: bool = True,
                 stride_in_1x1: bool = False):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels, stride if stride_in_1x1 else 1)   # reduce
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, 1 if stride_in_1x1 else stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, out_channels)                                  # restore
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride) if residual else None

    @property
    def last_bn(self) -> nn.Module:
        """The BN that ends F; its gamma = 0 makes the block the identity (or plain: zero)."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C_in, H, W)
        f = self.relu(self.bn1(self.conv1(x)))                               # (B, C, H, W), H/s if stride_in_1x1
        f = self.relu(self.bn2(self.conv2(f)))                               # (B, C, H/s, W/s)
        f = self.bn3(self.conv3(f))                                          # F(x, {W_i}), (B, 4C, H/s, W/s)
        if self.shortcut is not None:
            f = f + self.shortcut(x)                                         # Eq. 1 / Eq. 2
        return self.relu(f)
