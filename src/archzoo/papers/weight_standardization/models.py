"""CIFAR ResNets with GN+WS and BCN+WS (Qiao et al. 2019, arXiv:1903.10520, experiments of Sec. 5).

The paper changes nothing in a network but its normalization: every convolution becomes a `WSConv2d` (Sec. 3)
and every BN a GN (GN+WS) or a micro-batch BCN (BCN+WS, Sec. 4). WS has no parameters and GN has BN's per-channel
gamma and beta, so a GN+WS net has exactly the parameters of its BN twin (the paper's ResNet-50 GN+WS has
ResNet-50's 25.6M); BCN adds a second (gamma, beta) pair per normalized channel.

- `resnet20_gn_ws`: the CIFAR ResNet-20 of He et al. with GN (G = 8) + WS, 269,722 parameters, as `resnet20`.
- `resnet20_bcn_ws`: the same with BCN (G = 8, r = 0.1) + WS, 269,722 + 2 x 688 = 271,098 parameters.
"""

from __future__ import annotations

from functools import partial

from ...core.resnet import CifarResNet
from ...registry import CIFAR10_CFG, register_model
from ..group_norm.models import cifar_resnet_gn
from .batch_channel_norm import BatchChannelNorm
from .weight_standardization import WSConv2d


def cifar_resnet_gn_ws(depth: int, num_groups: int, zero_init_residual: bool = True, **kwargs) -> CifarResNet:
    """CifarResNet-`depth` with weight-standardized convolutions, each followed by `GroupNorm(num_groups, C)`.

    As group_norm's `cifar_resnet_gn` (the last GN of every block starts at gamma = 0), with `WSConv2d` in place of
    every convolution: the two nets differ by WS alone.
    """
    return cifar_resnet_gn(depth, num_groups, zero_init_residual=zero_init_residual, conv_layer=WSConv2d, **kwargs)


def cifar_resnet_bcn_ws(depth: int, num_groups: int, momentum: float = 0.1, **kwargs) -> CifarResNet:
    """CifarResNet-`depth` with weight-standardized convolutions, each followed by a micro-batch BCN.

    Every block's last BCN starts at gamma_b = 1: a zero gamma_b would feed a constant to the channel
    normalization, whose gradient at a zero-variance input is 1 / sqrt(eps).
    """
    if kwargs.get("zero_init_residual"):
        raise ValueError("zero_init_residual would zero BCN's gamma_b; BCN nets start with gamma_b = 1")
    return CifarResNet(depth, norm_layer=partial(BatchChannelNorm, num_groups=num_groups, momentum=momentum),
                       conv_layer=WSConv2d, **kwargs)


@register_model(paper="weight_standardization", **CIFAR10_CFG)
def resnet20_gn_ws(num_groups: int = 8, **kwargs) -> CifarResNet:
    """ResNet-20 (CIFAR, 16/32/64 channels) with GN (G = 8: 2, 4, 8 channels per group) + WS: 269,722 parameters."""
    return cifar_resnet_gn_ws(20, num_groups, **kwargs)


@register_model(paper="weight_standardization", **CIFAR10_CFG)
def resnet20_bcn_ws(num_groups: int = 8, momentum: float = 0.1, **kwargs) -> CifarResNet:
    """ResNet-20 (CIFAR) with micro-batch BCN (G = 8, update rate r = 0.1) + WS: 271,098 parameters."""
    return cifar_resnet_bcn_ws(20, num_groups, momentum, **kwargs)
