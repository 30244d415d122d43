"""ResNets for ImageNet (Table 1) and for CIFAR-10 (Sec. 4.2), and their plain twins (He et al. 2015, arXiv:1512.03385).

Presets, timm style (`archzoo.create_model("resnet50", num_classes=10)`):

- `resnet18/34/50/101/152`: ImageNet nets of Table 1, option B shortcuts (projections where the shape changes),
  parameter counts equal to torchvision's (11,689,512 ... 60,192,808 with 1000 classes).
- `plain18/34`: the same nets without shortcuts (the plain baselines of Sec. 4.1, Table 2, Fig. 4).
- `resnet20/32/44/56/110` and `plain20/32/44/56/110`: the 6n+2-layer CIFAR-10 nets of Sec. 4.2 (Table 6, Fig. 6),
  option A shortcuts, so residual and plain twins have the same parameters (0.27M ... 1.7M).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier
from ...registry import CIFAR10_CFG, IMAGENET_CFG, register_model
from .blocks import BasicBlock, Bottleneck, ConvLayer, NormLayer, conv3x3


def make_stage(block: type[BasicBlock | Bottleneck], in_channels: int, channels: int, num_blocks: int, stride: int,
               **block_kw) -> nn.Sequential:
    """`num_blocks` blocks; the first one changes the width and (stride 2) halves the resolution (Sec. 3.3)."""
    blocks = [block(in_channels, channels, stride, **block_kw)]
    blocks += [block(channels * block.expansion, channels, 1, **block_kw) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class ResNetBase(Classifier, nn.Module):
    """What the ImageNet and CIFAR nets share: stem -> stages -> global average pooling -> fully connected.

    `forward_features(x)` returns the last feature map (B, num_features, H', W'), `forward_head` pools and
    classifies, `forward(x)` returns logits (B, num_classes) (`core.Classifier`; the head is `fc`). Weights are
    initialised as in the paper (Sec. 3.4, "as in [13]"): Kaiming normal (fan_out) for convolutions, BN gamma = 1
    and beta = 0; with `zero_init_residual` the last BN of every block starts at gamma = 0, so every residual block
    starts as its shortcut (Goyal et al. 2017, not in the paper; off by default). Any image of at least
    `min_img_size` (and at most `max_img_size`, when set) pixels a side runs.
    """

    classifier_name = "fc"
    min_img_size: int = 1
    max_img_size: int | None = None
    stem: nn.Sequential
    stages: nn.Sequential
    default_input_size: tuple[int, int, int]

    def __init__(self, num_classes: int, in_chans: int):
        super().__init__()
        if num_classes < 0 or in_chans < 1:
            raise ValueError(f"num_classes must be >= 0 and in_chans >= 1, got {num_classes} and {in_chans}")
        self.num_classes, self.in_chans = num_classes, in_chans

    def _finish(self, num_features: int, zero_init_residual: bool) -> None:
        """Add the head and initialise the weights (called by subclasses once stem and stages exist)."""
        self.num_features = num_features
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = self.new_head(self.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)

    def forward_features(self, x: Tensor) -> Tensor:                        # (B, C, H, W)
        x = check_image(x, self, C=self.in_chans, min_size=self.min_img_size, max_size=self.max_img_size)
        return self.stages(self.stem(x))                                     # (B, num_features, H', W')

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:  # (B, num_features, H', W')
        x = self.global_pool(x).flatten(1)                                   # (B, num_features)
        return x if pre_logits else self.fc(x)                               # (B, num_classes)


class ResNet(ResNetBase):
    """ResNet for ImageNet (Sec. 3.4, Table 1).

    conv1: 7x7 convolution, 64 filters, stride 2, BN, ReLU, then 3x3 max pooling with stride 2 (224 -> 56); four
    stages conv2_x ... conv5_x of `layers[i]` blocks with 64, 128, 256, 512 filters (x4 at the output of a
    bottleneck), the first block of conv3_x, conv4_x and conv5_x downsampling with stride 2 (56 -> 7); global
    average pooling and a fully connected layer. `shortcut` is option "A" or "B" (Sec. 3.3; the presets use B,
    Table 2's ResNet-34 A is `create_model("resnet34", shortcut="A")`), `residual=False` gives the plain net.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: Sequence[int], num_classes: int = 1000,
                 in_chans: int = 3, widths: Sequence[int] = (64, 128, 256, 512), shortcut: str = "B",
                 residual: bool = True, zero_init_residual: bool = False, stride_in_1x1: bool = False):
        super().__init__(num_classes, in_chans)
        if len(layers) != len(widths):
            raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} must have the same length")
        block_kw = dict(shortcut=shortcut, residual=residual)
        if stride_in_1x1:
            if block is not Bottleneck:
                raise ValueError("stride_in_1x1 only applies to bottleneck blocks")
            block_kw["stride_in_1x1"] = True
        self.default_input_size = (in_chans, 224, 224)
        self.stem = nn.Sequential(                                           # conv1 + pool, (B, 64, H/4, W/4)
            nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, in_channels = [], widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):                     # conv2_x ... conv5_x
            stages.append(make_stage(block, in_channels, w, n, stride=1 if i == 0 else 2, **block_kw))
            in_channels = w * block.expansion
        self.stages = nn.Sequential(*stages)                                 # (B, 512 * expansion, H/32, W/32)
        self._finish(in_channels, zero_init_residual)


class CifarResNet(ResNetBase):
    """The CIFAR-10 nets of Sec. 4.2: 6n+2 weighted layers.

    A 3x3 convolution with 16 filters, then three stages of n basic blocks (2n 3x3 layers) on feature maps of
    32, 16 and 8 pixels with 16, 32 and 64 filters (`width` scales them: width, 2 width, 4 width), subsampling
    by stride-2 convolutions, global average pooling and a fully connected layer. Shortcuts are option A "in all
    cases", so there are 3n of them and no parameters beyond the plain net's. The net is fully convolutional:
    any input size works (28x28 Fashion-MNIST gives maps of 28, 14, 7).

    `norm_layer(channels)`, `conv_layer(in, out, kernel_size, stride, padding, bias=False)` and `act_layer()`
    replace BN, the convolutions and ReLU everywhere: the normalization papers (GroupNorm, Weight
    Standardization, EvoNorm, BatchNorm's ablations) run their experiments on this network.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 shortcut: str = "A", residual: bool = True, zero_init_residual: bool = False,
                 norm_layer: NormLayer = nn.BatchNorm2d, conv_layer: ConvLayer = nn.Conv2d,
                 act_layer: type[nn.Module] = nn.ReLU):
        super().__init__(num_classes, in_chans)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.default_input_size = (in_chans, 32, 32)
        self.stem = nn.Sequential(                                           # (B, width, H, W)
            conv3x3(in_chans, width, 1, conv_layer), norm_layer(width), act_layer(),
        )
        widths = (width, 2 * width, 4 * width)
        self.stages = nn.Sequential(*[                                       # (B, 4w, H/4, W/4)
            make_stage(BasicBlock, widths[max(i - 1, 0)], w, n, stride=1 if i == 0 else 2, shortcut=shortcut,
                       residual=residual, norm_layer=norm_layer, conv_layer=conv_layer, act_layer=act_layer)
            for i, w in enumerate(widths)
        ])
        self._finish(widths[-1], zero_init_residual)


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
