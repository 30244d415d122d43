"""The network of FixMatch's experiments: a Wide ResNet (Zagoruyko & Komodakis 2016) as the authors' code builds
it (Sohn et al. 2020, Sec. 4 and Appendix B.1: "Wide ResNet-28-2 with 1.5M parameters" for CIFAR-10 and SVHN).

WRN-d-k: a 3x3 convolution with 16 filters, then three stages of n = (d - 4) / 6 pre-activation blocks
(BN, leaky ReLU 0.1, 3x3 conv, BN, leaky ReLU 0.1, 3x3 conv) with 16k, 32k and 64k filters on maps of the full,
half and quarter side, a final BN and leaky ReLU, global average pooling and a linear classifier. A block that
changes the width or the resolution feeds its pre-activated input to both the branch and a 1x1 projection
shortcut. BN momentum 0.001 (an average over ~1000 steps), as in the authors' code.
"""

from __future__ import annotations

from torch import Tensor, nn

from ...core import Classifier, check_image
from ...registry import register_model

LEAK = 0.1                          # leaky ReLU slope of the authors' code
BN_MOMENTUM = 0.001                 # the authors' code (TensorFlow decay 0.999)


def bn_act(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels, momentum=BN_MOMENTUM), nn.LeakyReLU(LEAK))


class WideBlock(nn.Module):
    """A pre-activation basic block: (BN, act, conv3x3, BN, act, conv3x3) + shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.pre = bn_act(in_channels)
        self.branch = nn.Sequential(nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False), bn_act(channels),
                                    nn.Conv2d(channels, channels, 3, 1, 1, bias=False))
        self.projection = None if in_channels == channels and stride == 1 else \
            nn.Conv2d(in_channels, channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = self.pre(x)
        return self.branch(a) + (x if self.projection is None else self.projection(a))


class WideResNet(Classifier, nn.Module):
    """WRN-`depth`-`widen` (see the module's docstring); any input side of at least 4 pixels runs."""

    def __init__(self, depth: int = 28, widen: int = 2, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        if widen < 1:
            raise ValueError(f"widen must be >= 1, got {widen}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.depth, self.widen, self.in_chans = depth, widen, in_chans
        self.stem = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for stage in range(3):
            for i in range(n):
                blocks.append(WideBlock(widths[stage] if i == 0 else widths[stage + 1], widths[stage + 1],
                                        stride=2 if stage > 0 and i == 0 else 1))
        self.blocks = nn.Sequential(*blocks)
        self.final = bn_act(widths[-1])
        self.num_classes, self.num_features = num_classes, widths[-1]
        self.head = self.new_head(num_classes)
        for m in self.modules():                                           # the authors' code: He (fan-out) init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu", a=LEAK)

    def forward_features(self, x: Tensor) -> Tensor:                       # (B, C, H, W) -> (B, 64k, H/4, W/4)
        x = check_image(x, self, C=self.in_chans, min_size=4)
        return self.final(self.blocks(self.stem(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean((2, 3))                                                 # (B, 64k)
        return x if pre_logits else self.head(x)


@register_model(paper="fixmatch", input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                num_classes=10, task="image-classification")
def wrn28_2(**kwargs) -> WideResNet:
    """WRN-28-2, FixMatch's network for CIFAR-10 and SVHN (Sec. 4.1): 1,467,610 parameters at 10 classes."""
    return WideResNet(28, 2, **kwargs)

