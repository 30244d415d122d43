"""Axial-attention blocks and the stand-alone Axial-ResNets (Wang et al. 2020, arXiv:2003.07853, Sec. 3.2, Sec. 4.1).

An axial-attention block (Fig. 2) is a ResNet bottleneck whose 3x3 convolution is replaced by two axial-attention
layers, height axis then width axis: 1x1 convolution (reduce), height-axis attention, width-axis attention (which
average-pools where the block downsamples), 1x1 convolution (expand x2), residual connection. The Axial-ResNets stack
them in ResNet-50's stages (3, 4, 6, 3) with widths scaled by a multiplier s (S: 0.5, M: 0.75, L: 1.0, Sec. 4.1);
every attention is global along its axis (span m = the feature size: 56, 28, 14, 7 at 224x224).

Presets (1000 classes, 224x224), in the layout of the authors' PyTorch code (csrhddlam/axial-deeplab), whose stem is
ResNet's 7x7 convolution and max pooling ("Conv-Stem + Axial-Attention" of the paper's ImageNet table, Sec. 4.1):
- `axial_resnet26_s`: stages (1, 2, 4, 1), s = 0.5: 5,944,936 parameters (authors' model zoo: 5.9M, 75.8% top-1).
- `axial_resnet50_s`, `_m`, `_l`: stages (3, 4, 6, 3), s = 0.5, 0.75, 1.0: 11,586,216 / 25,179,400 / 43,973,480
  parameters. The paper reports 12.5M / 26.5M / 45.6M for its Axial-ResNet-S / M / L ("Full Axial-Attention", whose
  stem is not specified in enough detail to rebuild); see README.md.
- `axial_resnet_tiny`: a 2x2 patch stem and two stages of one block each for 28x28 images (the claims).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ...core.resnet import Bottleneck, ResNetBase, imagenet_stem, make_shortcut
from ...registry import IMAGENET_CFG, register_model
from .axial_attention import AxialAttention


class AxialBlock(nn.Module):
    r"""Axial-attention block (Sec. 3.2, Fig. 2): the bottleneck with height- then width-axis attention.

        F(x) = BN(W_up * relu(A_w(A_h(relu(BN(W_down * x)))))),    y = relu(F(x) + W_s x)

    A_h, A_w are `AxialAttention` layers of `channels` outputs; the output has `expansion` x `channels` channels.
    """

    expansion = 2

    def __init__(self, in_channels: int, channels: int, stride: int = 1, *, heads: int = 8, span: int = 56,
                 **attention_kw):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv_down = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.height_attention = AxialAttention(channels, heads=heads, span=span, axis="height", **attention_kw)
        self.width_attention = AxialAttention(channels, heads=heads, span=span, axis="width", stride=stride,
                                              **attention_kw)
        self.conv_up = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut("B", in_channels, out_channels, stride)   # projection where the shape changes

    @property
    def last_norm(self) -> nn.Module:
        """The BN that ends F: `zero_init_residual` starts its gamma at 0, so the block starts as its shortcut."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C_in, H, W)
        f = self.relu(self.bn1(self.conv_down(x)))                           # (B, C, H, W)
        f = self.relu(self.width_attention(self.height_attention(f)))        # A_w(A_h(.)), (B, C, H/s, W/s)
        f = self.bn2(self.conv_up(f))                                        # (B, 2C, H/s, W/s)
        return self.relu(f + self.shortcut(x))


class ConvBlock(Bottleneck):
    """The ResNet bottleneck an `AxialBlock` is made from (Sec. 3.2): the same 1x1 reduce and 1x1 expand (x2), with
    one 3x3 convolution + BN where the axial block has its two attention layers. `AxialResNet(block="conv")` stacks
    these: the convolutional twin of an Axial-ResNet, for comparisons at the same layout."""

    expansion = 2


class AxialResNet(ResNetBase):
    """Stand-alone Axial-ResNet (Sec. 4.1): a stem, stages of `AxialBlock`s, global pooling, a classifier.

    Stage i has `layers[i]` blocks of int(planes[i] * width_multiplier) attention channels (x2 at the output) and
    downsamples by `strides[i]` in its first block. `stem="imagenet"` is ResNet's 7x7/2 convolution and 3x3/2 max
    pooling (224 -> 56); `stem="patch"` a `patch_size` x `patch_size` convolution with that stride. Every attention
    is global along its axis: its span is the feature size it sees at `img_size` (the first block of a stage works at
    the stage's input resolution). `position`, `gated`, `norm` go to every `AxialAttention`.

    Images of at most `img_size` pixels a side run (the spans cover them), and of at least `min_img_size`: every
    downsampling block average-pools a map of at least its stride (29 pixels for the ImageNet presets).
    `block="conv"` builds the convolutional twin instead (`ConvBlock`s, no attention).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), *, width_multiplier: float = 0.5,
                 planes: Sequence[int] = (128, 256, 512, 1024), strides: Sequence[int] = (1, 2, 2, 2),
                 stem_width: int = 64, stem: str = "imagenet", patch_size: int = 2, num_classes: int = 1000,
                 in_chans: int = 3, img_size: int = 224, heads: int = 8, zero_init_residual: bool = True,
                 position: str = "qkv", norm: bool = True, gated: bool = False, block: str = "axial"):
        super().__init__(num_classes, in_chans)
        if block not in ("axial", "conv"):
            raise ValueError(f"block must be 'axial' or 'conv', got {block!r}")
        if not len(layers) == len(planes) == len(strides):
            raise ValueError(f"layers {tuple(layers)}, planes {tuple(planes)} and strides {tuple(strides)} "
                             "must have the same length")
        s, attention_kw = width_multiplier, dict(position=position, norm=norm, gated=gated)
        self.default_input_size = (in_chans, img_size, img_size)
        stem_width = int(stem_width * s)
        if stem == "imagenet":
            self.stem = imagenet_stem(in_chans, stem_width)
            size = -(-img_size // 4)
        elif stem == "patch":
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_width, patch_size, stride=patch_size, bias=False),
                                      nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True))
            size = img_size // patch_size
        else:
            raise ValueError(f"stem must be 'imagenet' or 'patch', got {stem!r}")
        need = math.prod(strides)                                            # map side after the stem, at least
        self.min_img_size = 4 * (need - 1) + 1 if stem == "imagenet" else patch_size * need
        self.max_img_size = img_size
        if img_size < self.min_img_size:
            raise ValueError(f"img_size must be at least {self.min_img_size} for these strides, got {img_size}")
        self.min_input_size = (in_chans, self.min_img_size, self.min_img_size)

        def make_block(in_channels: int, channels: int, stride: int, span: int) -> nn.Module:
            if block == "conv":
                return ConvBlock(in_channels, channels, stride)
            return AxialBlock(in_channels, channels, stride, heads=heads, span=span, **attention_kw)

        stages, in_channels = [], stem_width
        for n, p, stride in zip(layers, planes, strides):
            channels = int(p * s)
            blocks = [make_block(in_channels, channels, stride, size)]
            size = -(-size // stride)
            in_channels = channels * AxialBlock.expansion
            blocks += [make_block(in_channels, channels, 1, size) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)                                 # (B, num_features, H', W')
        self.finish(in_channels, zero_init_residual)                         # each block starts as its shortcut


@register_model(paper="axial_deeplab", **IMAGENET_CFG)
def axial_resnet26_s(**kwargs) -> AxialResNet:
    """Axial-ResNet-26-S: stages (1, 2, 4, 1), s = 0.5; 5,944,936 parameters (authors' model zoo: 5.9M)."""
    return AxialResNet((1, 2, 4, 1), width_multiplier=0.5, **kwargs)


@register_model(paper="axial_deeplab", **IMAGENET_CFG)
def axial_resnet50_s(**kwargs) -> AxialResNet:
    """Axial-ResNet-S (Sec. 4.1): stages (3, 4, 6, 3), s = 0.5; 11,586,216 parameters (paper: 12.5M)."""
    return AxialResNet((3, 4, 6, 3), width_multiplier=0.5, **kwargs)


@register_model(paper="axial_deeplab", **IMAGENET_CFG)
def axial_resnet50_m(**kwargs) -> AxialResNet:
    """Axial-ResNet-M (Sec. 4.1): stages (3, 4, 6, 3), s = 0.75; 25,179,400 parameters (paper: 26.5M)."""
    return AxialResNet((3, 4, 6, 3), width_multiplier=0.75, **kwargs)


@register_model(paper="axial_deeplab", **IMAGENET_CFG)
def axial_resnet50_l(**kwargs) -> AxialResNet:
    """Axial-ResNet-L (Sec. 4.1): stages (3, 4, 6, 3), s = 1.0; 43,973,480 parameters (paper: 45.6M)."""
    return AxialResNet((3, 4, 6, 3), width_multiplier=1.0, **kwargs)


@register_model(paper="axial_deeplab", input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10,
                task="image-classification")
def axial_resnet_tiny(**kwargs) -> AxialResNet:
    """A small Axial-ResNet for 28x28 images: 2x2 patch stem (32 channels), two stages of one block (16 and 32
    attention channels, 4 heads), the second downsampling 14 -> 7."""
    kwargs = {"num_classes": 10, "in_chans": 1, "img_size": 28, **kwargs}
    return AxialResNet((1, 1), width_multiplier=1.0, planes=(16, 32), strides=(1, 2), stem_width=32, stem="patch",
                       heads=4, **kwargs)
