r"""ResNet's blocks, stages and networks (He, Zhang, Ren, Sun 2015, arXiv:1512.03385), shared by the convolutional
papers: the `resnet` presets, the normalization papers' experiments, and the nets that swap one layer of the block
(RedNet's involution, LambdaResNet's lambda layer, Axial-ResNet's axial attention, BiT's pre-activation unit).

A block learns a residual F(x, {W_i}) and adds its input back (Sec. 3.2-3.3, Fig. 2, Fig. 5):

    y = F(x, {W_i}) + x              (Eq. 1, when F keeps the shape)
    y = F(x, {W_i}) + W_s x          (Eq. 2, when F changes the channels or the resolution)

followed by a ReLU. W_s is option A (identity with zero-padded channels, no parameters) or option B (a 1x1
projection, only where the shape changes) of Sec. 3.3. With `residual=False` a block drops the shortcut and
becomes the paper's *plain* counterpart, y = relu(F(x)), identical in every other respect.

Every block, stage, stem and network takes three factories, timm style, whose defaults are the paper's layers:

    norm_layer(channels) -> nn.Module                                   # BN; GroupNorm, EvoNorm, nn.Identity, ...
    conv_layer(in, out, kernel_size, stride=, padding=, bias=False)     # nn.Conv2d's signature; WSConv2d, ...
    act_layer() -> nn.Module                                            # ReLU; nn.Identity after a norm-act layer

A network is a `ResNetBase`: its subclass builds `stem` and `stages`, then calls `finish(num_features,
zero_init_residual)`, which adds the pooled linear head and initialises the weights. A block that ends its branch
F with a norm names it `last_norm`; `zero_init_residual` starts that norm's gamma at 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_image
from .classifier import Classifier

NormLayer = Callable[[int], nn.Module]
ConvLayer = Callable[..., nn.Module]
ActLayer = Callable[[], nn.Module]
SHORTCUTS = ("A", "B")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, conv_layer: ConvLayer = nn.Conv2d) -> nn.Module:
    """3x3 convolution, padding 1, no bias (the norm that follows has its own shift)."""
    return conv_layer(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, conv_layer: ConvLayer = nn.Conv2d) -> nn.Module:
    """1x1 convolution, no bias."""
    return conv_layer(in_channels, out_channels, 1, stride=stride, padding=0, bias=False)


# ----------------------------------------------------------------------------- shortcuts (Sec. 3.3)


class ZeroPadShortcut(nn.Module):
    r"""Option A shortcut (Sec. 3.3): identity mapping, with extra zero entries padded for increasing dimensions.

    When the shortcut goes across feature maps of two sizes it is performed with a stride of 2, i.e. it keeps
    every second pixel; the new channels are zeros appended after the input's:

        W_s x = [x[:, :, ::s, ::s], 0]

    It has no parameters, so a ResNet with option A has exactly the parameters of its plain twin (Sec. 4.1:
    "no extra parameter compared to the plain counterparts"). This is the shortcut of the CIFAR nets (Sec. 4.2).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A can only add channels, got {in_channels} -> {out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C_in, H, W)
        x = x[:, :, :: self.stride, :: self.stride]                          # (B, C_in, H/s, W/s)
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))  # (B, C_out, H/s, W/s)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def projection_shortcut(in_channels: int, out_channels: int, stride: int = 1, norm_layer: NormLayer = nn.BatchNorm2d,
                        conv_layer: ConvLayer = nn.Conv2d) -> nn.Sequential:
    """Option B shortcut (Sec. 3.3, Eq. 2): W_s is a 1x1 convolution with stride s, followed by a norm (Sec. 3.4)."""
    return nn.Sequential(conv1x1(in_channels, out_channels, stride, conv_layer), norm_layer(out_channels))


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer = nn.BatchNorm2d,
                  conv_layer: ConvLayer = nn.Conv2d) -> nn.Module:
    """The shortcut of Eq. 1 (identity) where the shape is kept, else option `kind` ("A" or "B") of Eq. 2."""
    if kind not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {kind!r}")
    if in_channels == out_channels and stride == 1:
        return nn.Identity()                                                 # Eq. 1
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return projection_shortcut(in_channels, out_channels, stride, norm_layer, conv_layer)


# ----------------------------------------------------------------------------- blocks (Fig. 2, Fig. 5)


class BasicBlock(nn.Module):
    r"""The two-layer building block (Fig. 2, Fig. 5 left) of ResNet-18/34 and of the CIFAR nets (Sec. 4.2).

    Two 3x3 convolutions, a norm right after each one and before the activation (Sec. 3.4: BN):

        F(x) = BN(W_2 * relu(BN(W_1 * x))),    y = relu(F(x) + W_s x)

    The first convolution carries the stride when the block halves the resolution. `residual=False` gives the
    plain block y = relu(F(x)).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "B", residual: bool = True,
                 norm_layer: NormLayer = nn.BatchNorm2d, conv_layer: ConvLayer = nn.Conv2d,
                 act_layer: ActLayer = nn.ReLU):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride, conv_layer)
        self.bn1 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels, 1, conv_layer)
        self.bn2 = norm_layer(channels)
        self.relu = act_layer()
        self.shortcut = make_shortcut(shortcut, in_channels, channels, stride, norm_layer, conv_layer) \
            if residual else None

    @property
    def last_norm(self) -> nn.Module:
        """The norm that ends F; its gamma = 0 makes the block the identity (or plain: zero)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C_in, H, W)
        f = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))         # F(x, {W_1, W_2}), (B, C, H/s, W/s)
        if self.shortcut is not None:
            f = f + self.shortcut(x)                                         # Eq. 1 / Eq. 2
        return self.relu(f)


class Bottleneck(nn.Module):
    r"""The three-layer bottleneck building block (Fig. 5 right, Sec. 4.1) of ResNet-50/101/152.

    A 1x1 convolution reduces the channels, a 3x3 convolution works at the reduced width, a 1x1 convolution
    restores them (x `expansion` = 4), a norm after each:

        F(x) = BN(W_3 * relu(BN(W_2 * relu(BN(W_1 * x))))),    y = relu(F(x) + W_s x)

    Where the block halves the resolution, the stride sits on the 3x3 convolution as in torchvision ("ResNet
    v1.5"); the paper's original models put it on the first 1x1 convolution (`stride_in_1x1=True`). The
    parameter count is the same either way. A paper that changes the middle layer (an involution, a lambda layer)
    replaces `conv2` and keeps the rest.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "B", residual: bool = True,
                 stride_in_1x1: bool = False, norm_layer: NormLayer = nn.BatchNorm2d, conv_layer: ConvLayer = nn.Conv2d,
                 act_layer: ActLayer = nn.ReLU):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels, stride if stride_in_1x1 else 1, conv_layer)   # reduce
        self.bn1 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels, 1 if stride_in_1x1 else stride, conv_layer)
        self.bn2 = norm_layer(channels)
        self.conv3 = conv1x1(channels, out_channels, 1, conv_layer)                               # restore
        self.bn3 = norm_layer(out_channels)
        self.relu = act_layer()
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, norm_layer, conv_layer) \
            if residual else None

    @property
    def last_norm(self) -> nn.Module:
        """The norm that ends F; its gamma = 0 makes the block the identity (or plain: zero)."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C_in, H, W)
        f = self.relu(self.bn1(self.conv1(x)))                               # (B, C, H, W), H/s if stride_in_1x1
        f = self.relu(self.bn2(self.conv2(f)))                               # (B, C, H/s, W/s)
        f = self.bn3(self.conv3(f))                                          # F(x, {W_i}), (B, 4C, H/s, W/s)
        if self.shortcut is not None:
            f = f + self.shortcut(x)                                         # Eq. 1 / Eq. 2
        return self.relu(f)


# ----------------------------------------------------------------------------- stems and stages


def make_stage(block: Callable[..., nn.Module], in_channels: int, channels: int, num_blocks: int, stride: int,
               **block_kw) -> nn.Sequential:
    """`num_blocks` blocks `block(in_channels, channels, stride, **block_kw)`; the first one changes the width and
    (stride 2) halves the resolution (Sec. 3.3), the others keep both. A block class states its `expansion`
    (output channels / `channels`)."""
    blocks = [block(in_channels, channels, stride, **block_kw)]
    blocks += [block(channels * block.expansion, channels, 1, **block_kw) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


def make_stages(block: Callable[..., nn.Module], in_channels: int, widths: Sequence[int], layers: Sequence[int],
                **block_kw) -> tuple[nn.Sequential, int]:
    """One `make_stage` per (width, number of blocks), the first at stride 1 and every later one halving the
    resolution (Table 1: conv2_x ... conv5_x; Sec. 4.2: the three CIFAR stages). Returns the stages and their
    output channels (`widths[-1] * block.expansion`)."""
    if len(layers) != len(widths):
        raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} must have the same length")
    stages = []
    for i, (n, w) in enumerate(zip(layers, widths)):
        stages.append(make_stage(block, in_channels, w, n, stride=1 if i == 0 else 2, **block_kw))
        in_channels = w * block.expansion
    return nn.Sequential(*stages), in_channels


def imagenet_stem(in_chans: int, width: int = 64, norm_layer: NormLayer = nn.BatchNorm2d,
                  conv_layer: ConvLayer = nn.Conv2d, act_layer: ActLayer = nn.ReLU) -> nn.Sequential:
    """conv1 of Table 1: a 7x7/2 convolution, norm, ReLU, then a 3x3/2 max pooling (224 -> 56)."""
    return nn.Sequential(conv_layer(in_chans, width, 7, stride=2, padding=3, bias=False), norm_layer(width),
                         act_layer(), nn.MaxPool2d(3, stride=2, padding=1))


def cifar_stem(in_chans: int, width: int = 16, stride: int = 1, norm_layer: NormLayer = nn.BatchNorm2d,
               conv_layer: ConvLayer = nn.Conv2d, act_layer: ActLayer = nn.ReLU) -> nn.Sequential:
    """The first layer of the CIFAR nets (Sec. 4.2): a 3x3 convolution with `width` filters, norm, ReLU."""
    return nn.Sequential(conv3x3(in_chans, width, stride, conv_layer), norm_layer(width), act_layer())


# ----------------------------------------------------------------------------- networks


class ResNetBase(Classifier, nn.Module):
    """What every ResNet-shaped classifier shares: stem -> stages -> global average pooling -> fully connected.

    A subclass calls `super().__init__(num_classes, in_chans)`, builds `self.stem` and `self.stages` and sets
    `default_input_size`, then calls `finish`. `forward_features(x)` returns the last feature map
    (B, num_features, H', W'), `forward_head` pools and classifies, `forward(x)` returns logits (B, num_classes)
    (`core.Classifier`; the head is `fc`). Any image of at least `min_img_size` (and at most `max_img_size`, when
    set) pixels a side runs.
    """

    classifier_name = "fc"
    min_img_size: int = 1
    max_img_size: int | None = None
    stem: nn.Module
    stages: nn.Sequential
    default_input_size: tuple[int, int, int]

    def __init__(self, num_classes: int, in_chans: int):
        super().__init__()
        if num_classes < 0 or in_chans < 1:
            raise ValueError(f"num_classes must be >= 0 and in_chans >= 1, got {num_classes} and {in_chans}")
        self.num_classes, self.in_chans = num_classes, in_chans

    def finish(self, num_features: int, zero_init_residual: bool = False) -> None:
        """Add the head and initialise the weights, once stem and stages exist.

        As in the paper (Sec. 3.4, "as in [13]"): Kaiming normal (fan_out) for every convolution, BN gamma = 1 and
        beta = 0. With `zero_init_residual` the `last_norm` of every block starts at gamma = 0, so every residual
        block starts as its shortcut (Goyal et al. 2017, arXiv:1706.02677, Sec. 5.1; not in the paper).
        """
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
                if hasattr(m, "last_norm"):
                    nn.init.zeros_(m.last_norm.weight)

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
    average pooling and a fully connected layer. `shortcut` is option "A" or "B" (Sec. 3.3), `residual=False`
    gives the plain net, `stride_in_1x1` the paper's stride placement in bottlenecks; `norm_layer`, `conv_layer`
    and `act_layer` replace BN, the convolutions and ReLU everywhere.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: Sequence[int], num_classes: int = 1000,
                 in_chans: int = 3, widths: Sequence[int] = (64, 128, 256, 512), shortcut: str = "B",
                 residual: bool = True, zero_init_residual: bool = False, stride_in_1x1: bool = False,
                 norm_layer: NormLayer = nn.BatchNorm2d, conv_layer: ConvLayer = nn.Conv2d,
                 act_layer: ActLayer = nn.ReLU):
        super().__init__(num_classes, in_chans)
        layers_kw = dict(norm_layer=norm_layer, conv_layer=conv_layer, act_layer=act_layer)
        block_kw = dict(shortcut=shortcut, residual=residual, **layers_kw)
        if stride_in_1x1:
            if not issubclass(block, Bottleneck):
                raise ValueError("stride_in_1x1 only applies to bottleneck blocks")
            block_kw["stride_in_1x1"] = True
        self.default_input_size = (in_chans, 224, 224)
        self.stem = imagenet_stem(in_chans, widths[0], **layers_kw)         # conv1 + pool, (B, 64, H/4, W/4)
        self.stages, num_features = make_stages(block, widths[0], widths, layers, **block_kw)  # (B, 512e, H/32, W/32)
        self.finish(num_features, zero_init_residual)


class CifarResNet(ResNetBase):
    """The CIFAR-10 nets of Sec. 4.2: 6n+2 weighted layers.

    A 3x3 convolution with 16 filters, then three stages of n basic blocks (2n 3x3 layers) on feature maps of
    32, 16 and 8 pixels with 16, 32 and 64 filters (`width` scales them: width, 2 width, 4 width), subsampling
    by stride-2 convolutions, global average pooling and a fully connected layer. Shortcuts are option A "in all
    cases", so there are 3n of them and no parameters beyond the plain net's. The net is fully convolutional:
    any input size works (28x28 Fashion-MNIST gives maps of 28, 14, 7).

    `norm_layer`, `conv_layer` and `act_layer` replace BN, the convolutions and ReLU everywhere: the
    normalization papers (GroupNorm, Weight Standardization, EvoNorm, BatchNorm's ablations) run their
    experiments on this network.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 shortcut: str = "A", residual: bool = True, zero_init_residual: bool = False,
                 norm_layer: NormLayer = nn.BatchNorm2d, conv_layer: ConvLayer = nn.Conv2d,
                 act_layer: ActLayer = nn.ReLU):
        super().__init__(num_classes, in_chans)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        layers_kw = dict(norm_layer=norm_layer, conv_layer=conv_layer, act_layer=act_layer)
        self.depth = depth
        self.default_input_size = (in_chans, 32, 32)
        self.stem = cifar_stem(in_chans, width, **layers_kw)                 # (B, width, H, W)
        self.stages, num_features = make_stages(BasicBlock, width, (width, 2 * width, 4 * width), (n, n, n),
                                                shortcut=shortcut, residual=residual, **layers_kw)  # (B, 4w, H/4, W/4)
        self.finish(num_features, zero_init_residual)
