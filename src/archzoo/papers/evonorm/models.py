"""CIFAR ResNets whose every BN-ReLU is one normalization-activation layer (Liu et al. 2020, Sec. 5).

The paper replaces every BN-ReLU of its networks by the EvoNorm under test, a single layer that both normalizes
and activates. We build on the CIFAR ResNet of `archzoo.core.resnet` with `norm_layer=` the layer and
`act_layer=nn.Identity`, so each residual branch is (conv -> layer) x 2 and the block adds its shortcut with no
ReLU after it. The original post-activation block has a BN without ReLU at the end of the branch and a ReLU after
the addition; here that BN also becomes a full normalization-activation layer and the ReLU goes, which puts one
layer before every convolution but the stem's, as in the pre-activation ResNets the paper's code uses. The BN-ReLU
baseline (`bn_relu`) is placed the same way, so two nets differ only in the layer.

Presets: `resnet20_evonorm_b0`, `resnet20_evonorm_s0` (ResNet-20 of He et al. Sec. 4.2 with EvoNorm-B0 / -S0).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ...core.resnet import CifarResNet
from ...registry import CIFAR10_CFG, register_model
from .evonorm import EvoNormB0, EvoNormS0


def s0_groups(num_channels: int) -> int:
    """EvoNorm-S0's number of groups: the paper's 32, but at least 2 channels per group in narrow layers
    (ResNet-50's narrowest layers have 64 channels, i.e. 2 per group)."""
    return min(32, max(1, num_channels // 2))


def evonorm_s0(num_channels: int) -> EvoNormS0:
    """EvoNorm-S0 with `s0_groups(num_channels)` groups."""
    return EvoNormS0(num_channels, groups=s0_groups(num_channels))


def bn_relu(num_channels: int) -> nn.Sequential:
    """The baseline normalization-activation layer: BatchNorm followed by ReLU."""
    return nn.Sequential(nn.BatchNorm2d(num_channels), nn.ReLU())


NORM_ACT = {"bn_relu": bn_relu, "evonorm_b0": EvoNormB0, "evonorm_s0": evonorm_s0}


def norm_act_resnet(norm_act: str | Callable[[int], nn.Module], depth: int = 20, num_classes: int = 10,
                    in_chans: int = 3, width: int = 16, **kwargs) -> CifarResNet:
    """A CifarResNet with the normalization-activation layer `norm_act(channels)` (or a name of `NORM_ACT`) in
    place of every BN and no other activation."""
    if isinstance(norm_act, str):
        if norm_act not in NORM_ACT:
            raise ValueError(f"norm_act must be one of {', '.join(NORM_ACT)} or a callable, got {norm_act!r}")
        norm_act = NORM_ACT[norm_act]
    return CifarResNet(depth, num_classes, in_chans, width=width, norm_layer=norm_act, act_layer=nn.Identity,
                       **kwargs)


@register_model(paper="evonorm", **CIFAR10_CFG)
def resnet20_evonorm_b0(**kwargs) -> CifarResNet:
    """ResNet-20 (He et al. Sec. 4.2) with EvoNorm-B0 in place of every BN-ReLU: 269,722 + 688 = 270,410 parameters
    with 10 classes and 3 input channels (each of the 19 layers adds v_1, one parameter per channel)."""
    return norm_act_resnet("evonorm_b0", 20, **kwargs)


@register_model(paper="evonorm", **CIFAR10_CFG)
def resnet20_evonorm_s0(**kwargs) -> CifarResNet:
    """ResNet-20 with EvoNorm-S0 in place of every BN-ReLU, 8/16/32 groups in the 16/32/64-channel stages:
    270,410 parameters with 10 classes and 3 input channels, as B0."""
    return norm_act_resnet("evonorm_s0", 20, **kwargs)
