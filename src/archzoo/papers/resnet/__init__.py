"""ResNet: Deep Residual Learning for Image Recognition (He, Zhang, Ren, Sun 2015, arXiv:1512.03385).

Blocks (`BasicBlock`, `Bottleneck`, option A `ZeroPadShortcut`, option B `projection_shortcut`), the ImageNet
`ResNet` and the CIFAR `CifarResNet` with their plain twins, the presets resnet18 ... resnet152, resnet20 ...
resnet110, plain18/34 and plain20 ... plain110, and the degradation claim. See README.md beside this file.
"""

from . import claims, reference  # noqa: F401  (registers the claim and the benchmark reference)
from .blocks import BasicBlock, Bottleneck, ZeroPadShortcut, make_shortcut, projection_shortcut
from .models import CifarResNet, ResNet, ResNetBase

__all__ = ["BasicBlock", "Bottleneck", "ZeroPadShortcut", "projection_shortcut", "make_shortcut", "ResNet",
           "CifarResNet", "ResNetBase"]
