"""A CIFAR ResNet with Group Normalization in place of every BN (Wu & He 2018, arXiv:1803.08494, Sec. 4).

The paper swaps BN for GN in ResNet-50 and changes nothing else; GN has the same per-channel gamma and beta as BN
and no running statistics, so the network has exactly the parameters of its BN twin. `resnet20_gn` is the CIFAR
ResNet-20 of He et al. (Sec. 4.2 there) with GN: 269,722 parameters, as `resnet20`.
"""

from __future__ import annotations

from functools import partial

from ...core.resnet import CifarResNet
from ...registry import CIFAR10_CFG, register_model
from .group_norm import group_norm


def cifar_resnet_gn(depth: int, num_groups: int, zero_init_residual: bool = True, **kwargs) -> CifarResNet:
    """CifarResNet-`depth` with `GroupNorm(num_groups, C)` after every convolution.

    `zero_init_residual=True` starts gamma at 0 in the last GN of every residual block and at 1 elsewhere, as in
    the paper's implementation details (Sec. 4.1, after Goyal et al. 2017).
    """
    return CifarResNet(depth, norm_layer=partial(group_norm, num_groups=num_groups),
                       zero_init_residual=zero_init_residual, **kwargs)


@register_model(paper="group_norm", **CIFAR10_CFG)
def resnet20_gn(num_groups: int = 8, **kwargs) -> CifarResNet:
    """ResNet-20 (CIFAR, 16/32/64 channels) with GN, G = 8: 2, 4 and 8 channels per group in the three stages.

    The paper's G = 32 on ResNet-50 (64 to 2048 channels) puts 2 channels per group in the narrowest layers; G = 8
    does the same on this 4x narrower net (G = 32 cannot divide 16 channels). 269,722 parameters, as `resnet20`.
    """
    return cifar_resnet_gn(20, num_groups, **kwargs)
