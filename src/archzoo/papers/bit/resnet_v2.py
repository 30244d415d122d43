r"""BiT's ResNet-v2 with Group Normalization and Weight Standardization (Kolesnikov et al. 2019, arXiv:1912.11370,
Sec. 2.1, 4.1, 4.3), built on the pre-activation ResNet of He, Zhang, Ren & Sun 2016 ("Identity Mappings in Deep
Residual Networks", arXiv:1603.05027).

A pre-activation unit normalises and rectifies *before* each convolution and adds nothing after the sum, so the
identity path from one unit to the next is clean (He et al. 2016, Eq. 3, Fig. 4e):

    x_{l+1} = x_l + F(x_l),     F = WSConv_1x1 o ReLU o GN o WSConv_3x3 o ReLU o GN o WSConv_1x1 o ReLU o GN

Where the unit changes the shape, the shortcut is a 1x1 projection of the *pre-activated* input,
x_{l+1} = W_s ReLU(GN(x_l)) + F(x_l). BiT replaces every BatchNorm by GroupNorm (32 groups) and standardises the
weights of every convolution (Sec. 4.3): both are per-sample, so they work with the per-device batches of
large-batch pre-training and need no running statistics at transfer time, where BN's would have to be updated.
The architectures are ResNet-50/101/152 made wider by a factor of 1..4 (Sec. 2.1, 4.1; BiT-L is a ResNet152x4).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import init_head
from ...core.resnet import ResNetBase, make_stages
from ...registry import IMAGENET_CFG, INCEPTION_MEAN, INCEPTION_STD, register_layer, register_model
from ..group_norm import GroupNorm
from .std_conv import StdConv2d

GN_GROUPS = 32      # Sec. 4.3 / Wu & He 2018: GroupNorm with 32 groups


@register_layer(paper="bit")
class PreActBottleneck(nn.Module):
    r"""The pre-activation bottleneck unit (He et al. 2016, Fig. 4e; BiT Sec. 4.3: GN + WS in every layer).

        pre  = ReLU(GN(x))                                          # shared by the residual and the projection
        F(x) = WSConv_1x1(ReLU(GN(WSConv_3x3/s(ReLU(GN(WSConv_1x1(pre)))))))
        y    = F(x) + x              if the shape is kept         (He et al. 2016, Eq. 3)
        y    = F(x) + W_s pre        otherwise, W_s a 1x1/s WS convolution

    The 1x1 reduces to `channels`, the 3x3 works at that width and carries the stride (as in the released BiT
    models), the last 1x1 restores 4 x `channels`. No activation follows the addition.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, num_groups: int = GN_GROUPS):
        super().__init__()
        out_channels = channels * self.expansion
        self.norm1 = GroupNorm(num_groups, in_channels)
        self.conv1 = StdConv2d(in_channels, channels, 1, bias=False)                     # reduce
        self.norm2 = GroupNorm(num_groups, channels)
        self.conv2 = StdConv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.norm3 = GroupNorm(num_groups, channels)
        self.conv3 = StdConv2d(channels, out_channels, 1, bias=False)                    # restore
        self.relu = nn.ReLU(inplace=True)                                   # on a fresh GN output
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = StdConv2d(in_channels, out_channels, 1, stride=stride, bias=False) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C_in, H, W)
        pre = self.relu(self.norm1(x))                                       # pre-activation, (B, C_in, H, W)
        shortcut = x if self.shortcut is None else self.shortcut(pre)        # (B, 4C, H/s, W/s)
        f = self.conv1(pre)                                                  # (B, C, H, W)
        f = self.conv2(self.relu(self.norm2(f)))                             # (B, C, H/s, W/s)
        f = self.conv3(self.relu(self.norm3(f)))                             # F(x), (B, 4C, H/s, W/s)
        return f + shortcut                                                  # no ReLU after the sum


class ResNetV2(ResNetBase):
    """BiT's ResNet-v2 (Sec. 2.1, 4.3): a root, four stages of pre-activation bottlenecks, GN + ReLU, a zero head.

    - root: a 7x7/2 WS convolution with 64 x `width_factor` filters, zero padding of 1, a 3x3/2 max-pool (no
      normalization: the first unit's pre-activation normalises the root's output);
    - stages of `layers[i]` `PreActBottleneck`s of `widths[i]` x `width_factor` channels (x4 at their outputs),
      the first unit of stages 2.. halving the resolution (224 -> 7);
    - the final GN + ReLU that a pre-activation net needs before its head (He et al. 2016, Sec. 4.1);
    - global average pooling and a linear head initialised to all zeros (Sec. 3.3: "we initialize the head to all
      zeros"), so that the logits, and the head's gradient on the features, start at 0.

    `stem_width` and `widths` default to the paper's ResNet's (64; 64, 128, 256, 512); `num_groups` to GN's 32.
    """

    def __init__(self, layers: Sequence[int], width_factor: int = 1, num_classes: int = 1000, in_chans: int = 3,
                 stem_width: int = 64, widths: Sequence[int] = (64, 128, 256, 512), num_groups: int = GN_GROUPS):
        super().__init__(num_classes, in_chans)
        if len(layers) != len(widths) or min(layers, default=0) < 1 or width_factor < 1:
            raise ValueError(f"need one block count >= 1 per stage width and width_factor >= 1, got layers "
                             f"{tuple(layers)}, widths {tuple(widths)}, width_factor {width_factor}")
        self.width_factor = width_factor
        self.default_input_size = (in_chans, 224, 224)
        stem = stem_width * width_factor
        self.stem = nn.Sequential(                                           # the root, (B, 64k, H/4, W/4)
            StdConv2d(in_chans, stem, 7, stride=2, padding=3, bias=False),
            nn.ConstantPad2d(1, 0.0),
            nn.MaxPool2d(3, stride=2),
        )
        self.stages, num_features = make_stages(PreActBottleneck, stem, [w * width_factor for w in widths], layers,
                                                num_groups=num_groups)       # (B, 2048k, H/32, W/32)
        self.norm = GroupNorm(num_groups, num_features)                      # the pre-head GN + ReLU
        self.relu = nn.ReLU(inplace=True)                                   # on a fresh GN output
        self.finish(num_features, zero_init_residual=False)

    def new_head(self, num_classes: int) -> nn.Module:
        """A head with `num_classes` outputs, all zeros, at construction and for every BiT transfer (Sec. 3.3)."""
        return init_head(super().new_head(num_classes))

    def forward_features(self, x: Tensor) -> Tensor:                        # (B, C, H, W)
        x = check_image(x, self, C=self.in_chans)
        x = self.stages(self.stem(x))                                        # (B, num_features, H/32, W/32)
        return self.relu(self.norm(x))                                       # pre-head GN + ReLU


# ----------------------------------------------------------------------------- presets (Sec. 4.1, released models)
# Parameter counts with 1000 classes; WS adds no parameters, GN has BN's per-channel gamma and beta, and the head is a
# 1x1 convolution with bias in the paper (the same parameters as our linear head).

R50, R101, R152 = (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)
# pretrained_cfg: the released BiT models take RGB scaled to [-1, 1] (mean = std = 0.5 for inputs in [0, 1]).
BIT_CFG = dict(IMAGENET_CFG, mean=INCEPTION_MEAN, std=INCEPTION_STD)


@register_model(paper="bit", **BIT_CFG)
def bit_r50x1(**kwargs) -> ResNetV2:
    """BiT-R50x1: 25,549,352 parameters with 1000 classes (published: 25.5M)."""
    return ResNetV2(R50, 1, **kwargs)


@register_model(paper="bit", **BIT_CFG)
def bit_r50x3(**kwargs) -> ResNetV2:
    """BiT-R50x3: 217,319,080 parameters with 1000 classes."""
    return ResNetV2(R50, 3, **kwargs)


@register_model(paper="bit", **BIT_CFG)
def bit_r101x1(**kwargs) -> ResNetV2:
    """BiT-R101x1: 44,541,480 parameters with 1000 classes."""
    return ResNetV2(R101, 1, **kwargs)


@register_model(paper="bit", **BIT_CFG)
def bit_r101x3(**kwargs) -> ResNetV2:
    """BiT-R101x3: 387,934,888 parameters with 1000 classes."""
    return ResNetV2(R101, 3, **kwargs)


@register_model(paper="bit", **BIT_CFG)
def bit_r152x2(**kwargs) -> ResNetV2:
    """BiT-R152x2: 236,335,208 parameters with 1000 classes."""
    return ResNetV2(R152, 2, **kwargs)


@register_model(paper="bit", **BIT_CFG)
def bit_r152x4(**kwargs) -> ResNetV2:
    """BiT-R152x4, the BiT-L architecture (Sec. 2.1): 936,533,224 parameters with 1000 classes (published: 936M)."""
    return ResNetV2(R152, 4, **kwargs)
