"""RedNet: ResNet with involution (Li et al. 2021, arXiv:2103.06255, Sec. 4.1, Table 2).

RedNet takes the ResNet bottleneck (`archzoo.core.resnet.Bottleneck`) and replaces its 3x3 convolution by a
7x7 involution (16 channels per group, reduction 4), keeping the 1x1 convolutions that mix channels. The stem's
7x7 convolution becomes a 3x3/2 convolution (32 channels), a 3x3 involution and a 3x3 convolution (64 channels),
each followed by BN and ReLU, then the usual 3x3/2 max pooling. Stages and widths are ResNet's (Table 1 of He et
al.), with RedNet-26 [1, 2, 4, 1] and RedNet-38 [2, 3, 5, 2] added below ResNet-50's depth.

Presets (`archzoo.create_model("rednet50", num_classes=10)`): `rednet26/38/50/101/152`, parameter counts equal
to Table 2 (9.23M ... 33.99M with 1000 classes). `CifarRedNet` is the small CIFAR-layout net of our claim, with
a convolutional twin (`involution=False`) that differs only in the operator of the bottleneck's middle layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ...core.resnet import Bottleneck, ResNetBase, cifar_stem, conv3x3, make_stages
from ...registry import IMAGENET_CFG, register_model
from .involution import Involution


class RedNetBottleneck(Bottleneck):
    """The RedNet block (Sec. 4.1): ResNet's bottleneck with its 3x3 convolution replaced by a K x K involution.

    1x1 convolution (reduce to `channels`), BN, ReLU; involution (K = 7, stride s where the block downsamples:
    the kernels are generated from the average-pooled input, Sec. 3), BN, ReLU; 1x1 convolution (restore to
    4 `channels`), BN; shortcut (Eq. 1 / Eq. 2 of ResNet) and ReLU. Only `conv2` differs from `Bottleneck`.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "B", residual: bool = True,
                 kernel_size: int = 7, group_channels: int = 16, reduction: int = 4):
        super().__init__(in_channels, channels, stride, shortcut=shortcut, residual=residual)
        self.conv2 = Involution(channels, kernel_size, stride, group_channels=group_channels, reduction=reduction)


class RedNet(ResNetBase):
    """RedNet for ImageNet (Sec. 4.1, Table 2): involution stem, four stages of `RedNetBottleneck`s, pool, fc.

    stem: 3x3/2 conv (64/2 = 32 channels), BN, ReLU, 3x3 involution, BN, ReLU, 3x3 conv (64), BN, ReLU, 3x3/2
    max pooling (224 -> 56); stages conv2_x ... conv5_x with 64, 128, 256, 512 channels (x4 at the block output),
    projection shortcuts where the shape changes, the stride on the involution (56 -> 7).

    Initialisation as in the authors' code (d-li14/involution, `cls/mmcls/models/backbones/rednet.py`,
    `RedNet.init_weights`): Kaiming normal (fan_out) weights and zero biases for every convolution, including the
    kernel generation's W_0 and W_1, BN gamma = 1, and `zero_init_residual=True` (their default): the last BN of
    every block starts at gamma = 0, so every block starts as its shortcut. Without it a fresh RedNet in eval mode
    (BN still the identity) overflows: an involution's output is quadratic in its input (its kernel is generated
    from the input it multiplies), so the activations square block after block (1e26 and more) until they are inf.
    """

    def __init__(self, layers: Sequence[int], num_classes: int = 1000, in_chans: int = 3,
                 widths: Sequence[int] = (64, 128, 256, 512), kernel_size: int = 7, group_channels: int = 16,
                 reduction: int = 4, zero_init_residual: bool = True):
        super().__init__(num_classes, in_chans)
        self.default_input_size = (in_chans, 224, 224)
        half = widths[0] // 2
        self.stem = nn.Sequential(                                           # (B, 64, H/4, W/4)
            nn.Conv2d(in_chans, half, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            Involution(half, 3, 1, group_channels=group_channels, reduction=reduction),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            conv3x3(half, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        block_kw = dict(kernel_size=kernel_size, group_channels=group_channels, reduction=reduction)
        self.stages, num_features = make_stages(RedNetBottleneck, widths[0], widths, layers,
                                                **block_kw)                  # (B, 2048, H/32, W/32)
        self.finish(num_features, zero_init_residual)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                nn.init.zeros_(m.bias)                                        # mmcv's kaiming_init: bias 0


class CifarRedNet(ResNetBase):
    """A CIFAR-layout bottleneck net (our claim's small-scale RedNet), 9n+2 weighted layers.

    A 3x3 convolution with `width` filters (stride `stem_stride`), BN, ReLU, then three stages of n bottleneck
    blocks at `width`, 2 `width`, 4 `width` channels (x4 at the block output) on maps of H, H/2, H/4, global
    average pooling and a fully connected layer. With `involution=True` the blocks are `RedNetBottleneck`s
    (K x K involution); with `involution=False` they are ResNet's `Bottleneck`s (3x3 convolution): the
    twins differ only in that layer. Fully convolutional: 28x28 Fashion-MNIST gives maps of
    28, 14, 7 (14, 7, 4 with `stem_stride=2`).
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 involution: bool = True, kernel_size: int = 7, group_channels: int = 16, reduction: int = 4,
                 stem_stride: int = 1):
        super().__init__(num_classes, in_chans)
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"depth must be 9n+2 with n >= 1 (11, 20, 29, ...), got {depth}")
        n = (depth - 2) // 9
        self.depth, self.default_input_size = depth, (in_chans, 32, 32)
        self.stem = cifar_stem(in_chans, width, stem_stride)
        if involution:
            block, block_kw = RedNetBottleneck, dict(kernel_size=kernel_size, group_channels=group_channels,
                                                     reduction=reduction)
        else:
            block, block_kw = Bottleneck, {}
        self.stages, num_features = make_stages(block, width, (width, 2 * width, 4 * width), (n, n, n),
                                                **block_kw)                  # (B, 16 width, H/4, W/4)
        self.finish(num_features, zero_init_residual=False)


# ----------------------------------------------------------------------------- ImageNet presets (Table 2)


@register_model(paper="involution", **IMAGENET_CFG)
def rednet26(**kwargs) -> RedNet:
    """RedNet-26 (Table 2): blocks [1, 2, 4, 1], 9.23M parameters and 1.73 GMACs at 224 with 1000 classes."""
    return RedNet((1, 2, 4, 1), **kwargs)


@register_model(paper="involution", **IMAGENET_CFG)
def rednet38(**kwargs) -> RedNet:
    """RedNet-38 (Table 2): blocks [2, 3, 5, 2], 12.39M parameters and 2.22 GMACs at 224 with 1000 classes."""
    return RedNet((2, 3, 5, 2), **kwargs)


@register_model(paper="involution", **IMAGENET_CFG)
def rednet50(**kwargs) -> RedNet:
    """RedNet-50 (Table 2): blocks [3, 4, 6, 3], 15.54M parameters and 2.61 GMACs at 224 with 1000 classes."""
    return RedNet((3, 4, 6, 3), **kwargs)


@register_model(paper="involution", **IMAGENET_CFG)
def rednet101(**kwargs) -> RedNet:
    """RedNet-101 (Table 2): blocks [3, 4, 23, 3], 25.65M parameters and 4.74 GMACs at 224 with 1000 classes."""
    return RedNet((3, 4, 23, 3), **kwargs)


@register_model(paper="involution", **IMAGENET_CFG)
def rednet152(**kwargs) -> RedNet:
    """RedNet-152 (Table 2): blocks [3, 8, 36, 3], 33.99M parameters and 6.79 GMACs at 224 with 1000 classes."""
    return RedNet((3, 8, 36, 3), **kwargs)
