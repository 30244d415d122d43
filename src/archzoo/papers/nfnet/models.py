"""NFNets (Brock, De, Smith & Simonyan 2021, arXiv:2102.06171, Sec. 5, Table 1) and the NF-ResNets they build on.

Presets, timm style (`archzoo.create_model("nfnet_f0", num_classes=10)`):

- `nfnet_f0` ... `nfnet_f6`: the paper's family. Widths [256, 512, 1536, 1536], depths (n+1) x [1, 2, 6, 3] for Fn,
  GELU, alpha = 0.2, bottleneck ratio 0.5, group width 128, SE ratio 0.5, two grouped 3x3 convolutions per block,
  a final 1x1 convolution to 2 x 1536 = 3072 channels, dropout 0.2 ... 0.5 before the classifier, and the training
  resolution as `default_input_size` (192 ... 448; `test_input_size` 256 ... 576). With 1000 classes F0 has
  71,489,284 parameters (paper: 71.5M) and F6 438,359,116 (paper: 438.4M): every variant rounds to the paper's
  count, each step of n adds 61,144,972 parameters, and all seven equal timm's `dm_nfnet_f0 ... f6` (the authors'
  weights ported), counted on a machine where timm is installed.
- `nfnet_small`: an NFNet of the same design scaled to 28x28 grey images (ours, for the laptop experiments).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier, init_head
from ...registry import IMAGENET_CFG, register_model
from .blocks import NFBlock, make_conv
from .scaled_ws import ScaledActivation

# variant: (depth multiplier n+1, dropout, train resolution, test resolution, paper's parameter count in millions)
VARIANTS = {
    "f0": (1, 0.2, 192, 256, 71.5),
    "f1": (2, 0.3, 224, 320, 132.6),
    "f2": (3, 0.4, 256, 352, 193.8),
    "f3": (4, 0.4, 320, 416, 254.9),
    "f4": (5, 0.5, 384, 512, 316.1),
    "f5": (6, 0.5, 416, 544, 377.2),
    "f6": (7, 0.5, 448, 576, 438.4),
}
STEMS = ("deep", "shallow")


def expected_variances(depths, alpha: float) -> list[float]:
    """beta_{i+1}^2 = Var(h_{i+1}) at init for every block (skip gains at 1), by the bookkeeping of Sec. 3
    (2101.08692 Sec. 4): beta_{i+1}^2 = beta_i^2 + alpha^2 inside a stage, 1 + alpha^2 after a transition block."""
    variances = []
    for depth in depths:
        var = 1.0                                                           # the transition's shortcut: unit variance
        for _ in range(depth):
            var += alpha ** 2
            variances.append(var)
    return variances


class NFNet(Classifier, nn.Module):
    """A normalizer-free ResNet: stem -> stages of `NFBlock`s -> 1x1 conv -> global pool -> dropout -> linear.

    - stem `"deep"` (NFNets, Sec. 5): four 3x3 Scaled WS convolutions with `stem_chs` = (16, 32, 64) and widths[0] / 2
      channels, the first and the last with stride 2, gamma-scaled nonlinearities between them (no normalization, no
      pooling); `"shallow"`: one 3x3 convolution with stride 1 (small images).
    - stage s has depths[s] blocks of width widths[s]; its first block is a transition (stride strides[s]). Block
      i gets beta_i = sqrt(expected Var(h_i)) and stochastic-depth rate stochdepth_rate * i / num_blocks.
    - head: a 1x1 Scaled WS convolution to final_conv_mult * widths[-1] channels, the nonlinearity, global average
      pooling, dropout `drop_rate` and a linear classifier initialised N(0, 0.01^2) (the authors' release).

    `skip_gain_init` (0 for NFNets, 1 for the NF-ResNets of 2101.08692), `avg_down` (the transition shortcut pools
    before its 1x1 convolution, NFNets; False: a strided 1x1 convolution, NF-ResNets), `ws=False` (He-initialised plain
    convolutions and bare nonlinearities) and `signal_scaling=False` (every beta_i = 1) give the ablations whose
    signal propagation 2101.08692 plots; `alpha = 1` makes every branch add as much variance as a BN-ReLU branch.
    """

    classifier_name = "fc"

    def __init__(self, depths=(1, 2, 6, 3), widths=(256, 512, 1536, 1536), *, num_classes: int = 1000,
                 in_chans: int = 3, img_size: int = 192, test_img_size: int | None = None, alpha: float = 0.2,
                 bottleneck_ratio: float = 0.5, group_width: int | None = 128, se_ratio: float = 0.5,
                 num_3x3: int = 2, activation: str = "gelu", stochdepth_rate: float = 0.1, drop_rate: float = 0.2,
                 final_conv_mult: int = 2, stem: str = "deep", stem_chs=(16, 32, 64), strides=(1, 2, 2, 2),
                 skip_gain_init: float = 0.0,
                 avg_down: bool = True, ws: bool = True, signal_scaling: bool = True):
        super().__init__()
        if not (len(depths) == len(widths) == len(strides)) or min(depths) < 1 or len(stem_chs) != 3:
            raise ValueError(f"depths {tuple(depths)}, widths {tuple(widths)} and strides {tuple(strides)} must have "
                             f"the same length, every depth must be >= 1 and stem_chs {tuple(stem_chs)} three widths")
        if num_classes < 0 or in_chans < 1 or stem not in STEMS or final_conv_mult < 1 or not 0 <= drop_rate < 1:
            raise ValueError(f"need num_classes >= 0, in_chans >= 1, stem in {STEMS}, final_conv_mult >= 1 and "
                             f"0 <= drop_rate < 1; got {num_classes}, {in_chans}, {stem!r}, {final_conv_mult}, "
                             f"{drop_rate}")
        self.num_classes, self.in_chans, self.alpha = num_classes, in_chans, alpha
        self.default_input_size = (in_chans, img_size, img_size)
        self.test_input_size = (in_chans, test_img_size or img_size, test_img_size or img_size)
        self.act = ScaledActivation(activation, gamma=None if ws else 1.0)
        stem_width = widths[0] // 2
        if stem == "deep":                                                   # (B, widths[0]/2, H/4, W/4)
            chans = (in_chans, *stem_chs, stem_width)
            layers = []
            for i in range(4):
                layers += [make_conv(chans[i], chans[i + 1], 3, stride=2 if i in (0, 3) else 1, ws=ws)]
                layers += [self.act] if i < 3 else []
            self.stem = nn.Sequential(*layers)
        else:                                                                # (B, widths[0]/2, H, W)
            self.stem = make_conv(in_chans, stem_width, 3, ws=ws)

        num_blocks, index, expected_std, in_channels = sum(depths), 0, 1.0, stem_width
        stages = []
        for depth, width, stride in zip(depths, widths, strides):
            blocks = []
            for j in range(depth):
                blocks.append(NFBlock(
                    in_channels, width, stride=stride if j == 0 else 1,
                    beta=expected_std if signal_scaling else 1.0, alpha=alpha, bottleneck_ratio=bottleneck_ratio,
                    group_width=group_width, se_ratio=se_ratio, num_3x3=num_3x3, activation=activation,
                    stochdepth_rate=stochdepth_rate * index / num_blocks, skip_gain_init=skip_gain_init,
                    avg_down=avg_down, ws=ws))
                in_channels, index = width, index + 1
                expected_std = math.sqrt((1.0 if j == 0 else expected_std ** 2) + alpha ** 2)   # reset at a transition
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.expected_variances = expected_variances(depths, alpha)

        self.num_features = final_conv_mult * in_channels
        self.final_conv = make_conv(in_channels, self.num_features, 1, ws=ws)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.num_classes, self.fc = num_classes, self.new_head(num_classes)

    @property
    def blocks(self) -> list[NFBlock]:
        """The residual blocks in order (the residual stream is their output)."""
        return [block for stage in self.stages for block in stage]

    def forward_features(self, x: Tensor) -> Tensor:                        # (B, C, H, W)
        x = check_image(x, self, C=self.in_chans)
        h = self.stages(self.stem(x))                                        # residual stream, (B, widths[-1], h, w)
        return self.act(self.final_conv(h))                                  # (B, num_features, h, w)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:  # (B, num_features, h, w)
        x = self.dropout(self.global_pool(x).flatten(1))                     # (B, num_features)
        return x if pre_logits else self.fc(x)                               # (B, num_classes)

    def new_head(self, num_classes: int) -> nn.Module:
        """A classifier with `num_classes` outputs, weights N(0, 0.01^2) and zero bias (0: none, forward returns the
        pooled features)."""
        return init_head(super().new_head(num_classes), std=0.01)


def nfnet_cfg(variant: str) -> dict:
    """The pretrained_cfg of NFNet-`variant`: its train and test resolutions, ImageNet's normalisation (the
    authors' input pipeline subtracts ImageNet's mean and divides by its standard deviation)."""
    _, _, train_res, test_res, _ = VARIANTS[variant]
    return dict(IMAGENET_CFG, input_size=(3, train_res, train_res), test_input_size=(3, test_res, test_res))


def _nfnet(variant: str, **kwargs) -> NFNet:
    mult, drop_rate, train_res, test_res, _ = VARIANTS[variant]
    cfg = dict(depths=tuple(mult * d for d in (1, 2, 6, 3)), widths=(256, 512, 1536, 1536), drop_rate=drop_rate,
               img_size=train_res, test_img_size=test_res)
    return NFNet(**{**cfg, **kwargs})


@register_model(paper="nfnet", **nfnet_cfg("f0"))
def nfnet_f0(**kwargs) -> NFNet:
    """NFNet-F0 (Table 1): depths [1, 2, 6, 3], dropout 0.2, 192 px (test 256); 71,489,284 parameters with 1000
    classes (paper: 71.5M)."""
    return _nfnet("f0", **kwargs)


@register_model(paper="nfnet", **nfnet_cfg("f1"))
def nfnet_f1(**kwargs) -> NFNet:
    """NFNet-F1 (Table 1): depths [2, 4, 12, 6], dropout 0.3, 224 px (test 320);
    132,634,256 parameters (paper: 132.6M)."""
    return _nfnet("f1", **kwargs)


@register_model(paper="nfnet", **nfnet_cfg("f2"))
def nfnet_f2(**kwargs) -> NFNet:
    """NFNet-F2 (Table 1): depths [3, 6, 18, 9], dropout 0.4, 256 px (test 352);
    193,779,228 parameters (paper: 193.8M)."""
    return _nfnet("f2", **kwargs)


@register_model(paper="nfnet", **nfnet_cfg("f3"))
def nfnet_f3(**kwargs) -> NFNet:
    """NFNet-F3 (Table 1): depths [4, 8, 24, 12], dropout 0.4, 320 px (test 416);
    254,924,200 parameters (paper: 254.9M)."""
    return _nfnet("f3", **kwargs)


@register_model(paper="nfnet", **nfnet_cfg("f4"))
def nfnet_f4(**kwargs) -> NFNet:
    """NFNet-F4 (Table 1): depths [5, 10, 30, 15], dropout 0.5, 384 px (test 512);
    316,069,172 parameters (paper: 316.1M)."""
    return _nfnet("f4", **kwargs)


@register_model(paper="nfnet", **nfnet_cfg("f5"))
def nfnet_f5(**kwargs) -> NFNet:
    """NFNet-F5 (Table 1): depths [6, 12, 36, 18], dropout 0.5, 416 px (test 544);
    377,214,144 parameters (paper: 377.2M)."""
    return _nfnet("f5", **kwargs)


@register_model(paper="nfnet", **nfnet_cfg("f6"))
def nfnet_f6(**kwargs) -> NFNet:
    """NFNet-F6 (Table 1): depths [7, 14, 42, 21], dropout 0.5, 448 px (test 576);
    438,359,116 parameters (paper: 438.4M)."""
    return _nfnet("f6", **kwargs)


@register_model(paper="nfnet", input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10,
                task="image-classification")
def nfnet_small(**kwargs) -> NFNet:
    """An NFNet scaled to 28x28 grey images (ours, for Fashion-MNIST; not in the paper): the F0 design (deep stem,
    GELU, alpha 0.2, bottleneck 0.5, SE, two grouped 3x3 convolutions, skip gains at 0, dropout 0.2, stochastic
    depth 0.1) with stem widths (8, 16, 32), stage widths (32, 64, 128, 128), one block per stage and groups of 16
    channels. Maps: 28 -> stem 7 -> 7, 4, 2, 1; 10 classes, 197,654 parameters."""
    cfg = dict(depths=(1, 1, 1, 1), widths=(32, 64, 128, 128), stem_chs=(8, 16, 32), group_width=16, num_classes=10,
               in_chans=1, img_size=28)
    return NFNet(**{**cfg, **kwargs})
