"""The small CIFAR-10 convolutional net of the authors' code (`cifar10_tiny` in yk/icml19_public), a classifier
for the detector to guard.

The paper evaluates its test on CIFAR-10 and ImageNet classifiers (Sec. 4); its code's smallest CIFAR-10 net is
four 3x3 convolutions of n, n, 2n, 2n kernels (n = 32), each followed by a ReLU and a 2x2 max-pool, and one linear
layer on the 2n pooled maps. `odds_cnn4` is that net: 66,218 parameters on 32x32x3 images, 65,642 on Fashion-MNIST's
28x28x1.
"""

from __future__ import annotations

from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier
from ...registry import CIFAR10_CFG, register_model


class CNN4(Classifier, nn.Module):
    """conv(n) -> pool -> conv(n) -> pool -> conv(2n) -> pool -> conv(2n) -> global max-pool -> linear.

    The authors' last convolution is unpadded and followed by a 2x2 pool, which on 32x32 inputs leaves one pixel
    (32 -> 16 -> 8 -> 4 -> 2 -> 1). Here it is padded and followed by a global max-pool, so the same net takes any
    image of at least 8x8 pixels (Fashion-MNIST's 28, the digits' 8) with the same parameters.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 32):
        super().__init__()
        widths = (width, width, 2 * width, 2 * width)
        layers, c = [], in_chans
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
            layers.append(nn.MaxPool2d(2) if i < len(widths) - 1 else nn.AdaptiveMaxPool2d(1))
            c = w
        self.features = nn.Sequential(*layers)
        self.in_chans, self.num_classes, self.num_features = in_chans, num_classes, c
        self.head = self.new_head(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:              # (B, C, H, W) -> (B, 2n, 1, 1)
        return self.features(check_image(x, self, C=self.in_chans, min_size=8))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.flatten(1)                                            # (B, 2n)
        return x if pre_logits else self.head(x)


@register_model(paper="odds_are_odd", **{**CIFAR10_CFG, "min_input_size": (3, 8, 8)})
def odds_cnn4(**kwargs) -> CNN4:
    """The authors' `cifar10_tiny(32)`: widths 32, 32, 64, 64, 10 classes, 66,218 parameters on 32x32x3 images."""
    return CNN4(**kwargs)
