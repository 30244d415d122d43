"""ResNet: Deep Residual Learning for Image Recognition (He, Zhang, Ren, Sun 2015, arXiv:1512.03385).

The presets resnet18 ... resnet152, resnet20 ... resnet110, plain18/34 and plain20 ... plain110 (`models.py`) and
the degradation claim (`claims.py`). The blocks (`BasicBlock`, `Bottleneck`, option A `ZeroPadShortcut`, option B
`projection_shortcut`) and the networks (the ImageNet `ResNet`, the CIFAR `CifarResNet`) live in
`archzoo.core.resnet`, shared with the other convolutional papers, and are re-exported here. See README.md.
"""

from ...core.resnet import (
    BasicBlock,
    Bottleneck,
    CifarResNet,
    ResNet,
    ResNetBase,
    ZeroPadShortcut,
    make_shortcut,
    projection_shortcut,
)
from . import claims, models, reference  # noqa: F401  (registers the presets, the claim and the bench reference)

__all__ = ["BasicBlock", "Bottleneck", "ZeroPadShortcut", "projection_shortcut", "make_shortcut", "ResNet",
           "CifarResNet", "ResNetBase"]
