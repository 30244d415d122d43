"""The MNIST classifiers of Table 1 (Chen et al. 2018, Sec. 3): ODE-Net and the ResNet it replaces.

Both follow the authors' `odenet_mnist.py`: the image is downsampled twice (a 3x3 convolution to 64 channels, then
two 4x4 stride-2 convolutions with GroupNorm and ReLU: 28 -> 26 -> 13 -> 6), the feature layers act on the 64 x 6 x 6
state, and a head applies GroupNorm, ReLU, global average pooling and a linear layer. The feature layers are

- ResNet: 6 residual blocks (pre-activation: norm, ReLU, 3x3 conv, norm, ReLU, 3x3 conv, plus the identity);
- ODE-Net: one ODE block whose dynamics f(h, t) is one such block's residual branch with the time t fed to each
  convolution as an extra constant input channel (`ConcatConv2d`) and a last GroupNorm, integrated from t = 0 to 1.

The ODE block uses one set of weights for its whole depth, hence a third of the parameters: 208,266 for ODE-Net and
576,778 for the ResNet (the counts that `odenet_mnist.py` prints; Table 1 rounds them to 0.22M and 0.60M).
GroupNorm has min(32, C) groups, as in the authors' code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...core import Classifier, check_image
from ...registry import register_model
from .odeblock import ODEBlock

MNIST_CFG = dict(input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10, task="image-classification",
                 min_input_size=(1, 6, 6))      # inputs in [0, 1] (ToTensor only); 6 px: the smallest that downsamples


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class ConcatConv2d(nn.Module):
    """A 3x3 convolution of [t, h]: the time enters as one more input channel, constant over the image."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels + 1, channels, 3, padding=1)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:                       # (B, C, H, W)
        tt = h.new_ones(h.shape[0], 1, *h.shape[2:]) * t                      # (B, 1, H, W)
        return self.conv(torch.cat([tt, h], 1))                               # (B, C + 1, H, W) -> (B, C, H, W)


class ConvDynamics(nn.Module):
    """f(h(t), t, theta) of ODE-Net: norm, ReLU, ConcatConv, norm, ReLU, ConcatConv, norm (`ODEfunc` of the code)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.conv1 = norm(channels), ConcatConv2d(channels)
        self.norm2, self.conv2 = norm(channels), ConcatConv2d(channels)
        self.norm3 = norm(channels)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:                       # (B, C, H, W) -> (B, C, H, W)
        h = self.conv1(t, self.norm1(h).relu())
        h = self.conv2(t, self.norm2(h).relu())
        return self.norm3(h)


class ResBlock(nn.Module):
    """h + conv(ReLU(norm(conv(ReLU(norm(h)))))), 3x3 convolutions without bias (`ResBlock` of the code)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.conv1 = norm(channels), nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2, self.conv2 = norm(channels), nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, h: Tensor) -> Tensor:                                  # (B, C, H, W)
        return h + self.conv2(self.norm2(self.conv1(self.norm1(h).relu())).relu())


class MNISTNet(Classifier, nn.Module):
    """Downsampling, then `features` (an ODE block or residual blocks) on (B, width, 6, 6), then the head."""

    def __init__(self, features: nn.Module, num_classes: int = 10, in_chans: int = 1, width: int = 64):
        super().__init__()
        self.downsampling = nn.Sequential(
            nn.Conv2d(in_chans, width, 3), norm(width), nn.ReLU(),             # 28 -> 26
            nn.Conv2d(width, width, 4, 2, 1), norm(width), nn.ReLU(),          # 26 -> 13
            nn.Conv2d(width, width, 4, 2, 1))                                  # 13 -> 6
        self.features = features
        self.final_norm = norm(width)
        self.num_classes, self.num_features = num_classes, width
        self.head = self.new_head(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:                         # (B, C, H, W) -> (B, width, h, w)
        x = check_image(x, self, C=self.downsampling[0].in_channels, min_size=6)
        return self.final_norm(self.features(self.downsampling(x))).relu()

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean((2, 3))                                                    # (B, width)
        return x if pre_logits else self.head(x)


def odenet(width: int = 64, *, method: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-3,
           steps: int | None = None, adjoint: bool = True, **kwargs) -> MNISTNet:
    """ODE-Net: one ODE block on [0, 1] with `ConvDynamics`; `.features` is the block (NFE in `nfe_forward`)."""
    block = ODEBlock(ConvDynamics(width), method=method, rtol=rtol, atol=atol, steps=steps, adjoint=adjoint)
    return MNISTNet(block, width=width, **kwargs)


def resnet(width: int = 64, depth: int = 6, **kwargs) -> MNISTNet:
    """The ResNet of Table 1: `depth` residual blocks where ODE-Net has its ODE block."""
    return MNISTNet(nn.Sequential(*[ResBlock(width) for _ in range(depth)]), width=width, **kwargs)


@register_model(paper="neural_ode", **MNIST_CFG)
def odenet_mnist(method: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-3, steps: int | None = None,
                 adjoint: bool = True, **kwargs) -> MNISTNet:
    """ODE-Net of Table 1: dopri5 at rtol = atol = 1e-3 (the code's --tol), adjoint gradients. 208,266 parameters."""
    return odenet(method=method, rtol=rtol, atol=atol, steps=steps, adjoint=adjoint, **kwargs)


@register_model(paper="neural_ode", **MNIST_CFG)
def resnet6_mnist(**kwargs) -> MNISTNet:
    """The ResNet of Table 1: the same downsampling and head around 6 residual blocks. 576,778 parameters."""
    return resnet(**kwargs)
