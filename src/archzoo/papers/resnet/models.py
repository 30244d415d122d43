"""The presets of ResNet for ImageNet (Table 1) and for CIFAR-10 (Sec. 4.2), and their plain twins (He et al. 2015,
arXiv:1512.03385). The blocks and networks they build are `archzoo.core.resnet`'s (`BasicBlock`, `Bottleneck`,
`ResNet`, `CifarResNet`), which the other convolutional papers share.

Presets, timm style (`archzoo.create_model("resnet50", num_classes=10)`):

- `resnet18/34/50/101/152`: ImageNet nets of Table 1, option B shortcuts (projections where the shape changes),
  parameter counts equal to torchvision's (11,689,512 ... 60,192,808 with 1000 classes).
- `plain18/34`: the same nets without shortcuts (the plain baselines of Sec. 4.1, Table 2, Fig. 4).
- `resnet20/32/44/56/110` and `plain20/32/44/56/110`: the 6n+2-layer CIFAR-10 nets of Sec. 4.2 (Table 6, Fig. 6),
  option A shortcuts, so residual and plain twins have the same parameters (0.27M ... 1.7M).
"""

from __future__ import annotations

from ...core.resnet import BasicBlock, Bottleneck, CifarResNet, ResNet
from ...registry import CIFAR10_CFG, IMAGENET_CFG, register_model

# ----------------------------------------------------------------------------- ImageNet presets (Table 1)


@register_model(paper="resnet", **IMAGENET_CFG)
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (Table 1): basic blocks [2, 2, 2, 2], 11,689,512 parameters with 1000 classes."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model(paper="resnet", **IMAGENET_CFG)
def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (Table 1, Fig. 3 right): basic blocks [3, 4, 6, 3], 21,797,672 parameters with 1000 classes."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model(paper="resnet", **IMAGENET_CFG)
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (Table 1): bottleneck blocks [3, 4, 6, 3], 25,557,032 parameters with 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


@register_model(paper="resnet", **IMAGENET_CFG)
def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (Table 1): bottleneck blocks [3, 4, 23, 3], 44,549,160 parameters with 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


@register_model(paper="resnet", **IMAGENET_CFG)
def resnet152(**kwargs) -> ResNet:
    """ResNet-152 (Table 1): bottleneck blocks [3, 8, 36, 3], 60,192,808 parameters with 1000 classes."""
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)


@register_model(paper="resnet", **IMAGENET_CFG)
def plain18(**kwargs) -> ResNet:
    """Plain-18 (Sec. 4.1, Table 2): ResNet-18 without shortcuts."""
    return ResNet(BasicBlock, (2, 2, 2, 2), residual=False, **kwargs)


@register_model(paper="resnet", **IMAGENET_CFG)
def plain34(**kwargs) -> ResNet:
    """Plain-34 (Sec. 4.1, Fig. 3 middle, Table 2): ResNet-34 without shortcuts."""
    return ResNet(BasicBlock, (3, 4, 6, 3), residual=False, **kwargs)


# ----------------------------------------------------------------------------- CIFAR-10 presets (Sec. 4.2, Table 6)


@register_model(paper="resnet", **CIFAR10_CFG)
def resnet20(**kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR-10 (n = 3, Table 6: 0.27M parameters)."""
    return CifarResNet(20, **kwargs)


@register_model(paper="resnet", **CIFAR10_CFG)
def resnet32(**kwargs) -> CifarResNet:
    """ResNet-32 for CIFAR-10 (n = 5, Table 6: 0.46M parameters)."""
    return CifarResNet(32, **kwargs)


@register_model(paper="resnet", **CIFAR10_CFG)
def resnet44(**kwargs) -> CifarResNet:
    """ResNet-44 for CIFAR-10 (n = 7, Table 6: 0.66M parameters)."""
    return CifarResNet(44, **kwargs)


@register_model(paper="resnet", **CIFAR10_CFG)
def resnet56(**kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR-10 (n = 9, Table 6: 0.85M parameters)."""
    return CifarResNet(56, **kwargs)


@register_model(paper="resnet", **CIFAR10_CFG)
def resnet110(**kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR-10 (n = 18, Table 6: 1.7M parameters)."""
    return CifarResNet(110, **kwargs)


@register_model(paper="resnet", **CIFAR10_CFG)
def plain20(**kwargs) -> CifarResNet:
    """Plain-20 for CIFAR-10 (Sec. 4.2, Fig. 6 left): ResNet-20 without shortcuts, the same parameters."""
    return CifarResNet(20, residual=False, **kwargs)


@register_model(paper="resnet", **CIFAR10_CFG)
def plain32(**kwargs) -> CifarResNet:
    """Plain-32 for CIFAR-10 (Sec. 4.2, Fig. 6 left): ResNet-32 without shortcuts, the same parameters."""
    return CifarResNet(32, residual=False, **kwargs)


@register_model(paper="resnet", **CIFAR10_CFG)
def plain44(**kwargs) -> CifarResNet:
    """Plain-44 for CIFAR-10 (Sec. 4.2, Fig. 6 left): ResNet-44 without shortcuts, the same parameters."""
    return CifarResNet(44, residual=False, **kwargs)


@register_model(paper="resnet", **CIFAR10_CFG)
def plain56(**kwargs) -> CifarResNet:
    """Plain-56 for CIFAR-10 (Sec. 4.2, Fig. 1, Fig. 6 left): ResNet-56 without shortcuts, the same parameters."""
    return CifarResNet(56, residual=False, **kwargs)


@register_model(paper="resnet", **CIFAR10_CFG)
def plain110(**kwargs) -> CifarResNet:
    """Plain-110 for CIFAR-10 (Sec. 4.2): ResNet-110 without shortcuts, the same parameters."""
    return CifarResNet(110, residual=False, **kwargs)
