r"""The normalizer-free residual block (Brock et al. 2021, arXiv:2101.08692 Sec. 4; NFNets arXiv:2102.06171 Sec. 3, 5).

A batch-normalized ResNet's residual stream has a variance that grows by about one per block and is reset at every
transition; a normalizer-free ResNet reproduces that at initialization analytically:

    h_{i+1} = h_i + \alpha f_i(h_i / \beta_i),      \beta_i = \sqrt{Var(h_i)},      Var(h_{i+1}) = Var(h_i) + \alpha^2

f_i sees a unit-variance input and, built from Scaled WS convolutions and gamma-scaled nonlinearities
(`scaled_ws.py`), preserves it, so the block adds alpha^2 to the expected variance. At a transition block (first of
a stage) the shortcut itself is a convolution of the scaled input, so the variance restarts at 1 + alpha^2.
NFNets (2102.06171) add a learnable scalar "skip gain" at the end of every branch, initialised at 0 (SkipInit), a
squeeze-excite layer scaled by 2, stochastic depth and a second grouped 3x3 convolution (Sec. 5).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer
from .scaled_ws import ScaledActivation, ScaledStdConv2d


def make_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
              ws: bool = True) -> nn.Module:
    """A Scaled WS convolution, or (`ws=False`) a plain He-initialised one: the unnormalized baseline of Fig. 2 of
    arXiv:2101.08692, whose ReLU units accumulate a mean shift with depth."""
    if ws:
        return ScaledStdConv2d(in_channels, out_channels, kernel_size, stride=stride, groups=groups)
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                     groups=groups)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")               # He init, fan-in
    nn.init.zeros_(conv.bias)
    return conv


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite (Hu et al. 2018) as used in NFNets (Sec. 5): global average pool, a hidden layer of
    `hidden` ReLU units, a sigmoid gate per channel. The block multiplies its branch by 2 * gate, so that the gate
    (0.5 at a zero pre-activation) keeps the branch variance at init (Sec. 5)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc0 = nn.Linear(channels, hidden)
        self.fc1 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:                                   # (B, C, H, W)
        s = x.mean(dim=(2, 3))                                                # squeeze, (B, C)
        gate = torch.sigmoid(self.fc1(torch.relu(self.fc0(s))))               # excite, (B, C)
        return gate[:, :, None, None]                                         # (B, C, 1, 1)


class StochasticDepth(nn.Module):
    """Drop the whole residual branch of a sample with probability `rate` while training, scaling the kept ones by
    1 / (1 - rate) (Huang et al. 2016; NFNets Sec. 5 and Appendix). Identity in eval mode."""

    def __init__(self, rate: float):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"stochastic depth rate must be in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:                                   # (B, ...)
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


@register_layer(paper="nfnet")
class NFBlock(nn.Module):
    r"""The NFNet bottleneck block (arXiv:2102.06171 Sec. 5; the NF-ResNet form of 2101.08692 Sec. 4).

        x' = gamma g(h) / beta                                  (pre-activation, scaled to unit variance)
        f  = conv1x1 -> [gamma g -> conv3x3 (grouped, stride)] x num_3x3 -> gamma g -> conv1x1 -> 2 SE(f) f
        h' = shortcut + alpha * skip_gain * StochDepth(f),  shortcut = h, or conv1x1(x') at a transition

    The bottleneck width is `bottleneck_ratio * out_channels`, split into groups of `group_width` channels (NFNets:
    0.5 and 128; `group_width=None` is one group, the NF-ResNet of 2101.08692). `num_3x3=2` is the NFNet block with
    two grouped 3x3 convolutions, 1 the ResNet bottleneck. The shortcut is the identity unless the block changes the
    width or the resolution (a transition block): then it is a 1x1 convolution of the scaled pre-activation x', so
    the stream's variance restarts; NFNets put a 2x2 average pool before it where the block has stride 2 (the
    ResNet-D shortcut, `avg_down=True`), NF-ResNets give the 1x1 convolution the stride (`avg_down=False`). The
    pool averages away part of the variance of a spatially uncorrelated signal, which the beta bookkeeping does not
    model. beta is applied after the first nonlinearity, as in the authors' release (for ReLU, g(h)/beta =
    g(h/beta)). `skip_gain_init=0` (NFNets) makes the block its shortcut at init; 1 gives the NF-ResNets of
    2101.08692, whose signal propagation that paper plots.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, beta: float = 1.0, alpha: float = 0.2,
                 bottleneck_ratio: float = 0.5, group_width: int | None = 128, se_ratio: float = 0.5,
                 num_3x3: int = 2, activation: str = "gelu", stochdepth_rate: float = 0.0, skip_gain_init: float = 0.0,
                 avg_down: bool = True, ws: bool = True):
        super().__init__()
        width = int(out_channels * bottleneck_ratio)
        if width < 1 or num_3x3 < 1 or stride not in (1, 2):
            raise ValueError(f"need a bottleneck width >= 1, num_3x3 >= 1 and stride 1 or 2, got width {width}, "
                             f"num_3x3 {num_3x3}, stride {stride}")
        if group_width is not None and width % group_width:
            raise ValueError(f"bottleneck width {width} must be a multiple of group_width {group_width}")
        groups = 1 if group_width is None else width // group_width
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.beta, self.alpha = beta, alpha
        self.act = ScaledActivation(activation, gamma=None if ws else 1.0)
        self.conv0 = make_conv(in_channels, width, 1, ws=ws)
        self.convs_3x3 = nn.ModuleList([make_conv(width, width, 3, stride=stride if i == 0 else 1, groups=groups, ws=ws)
                                        for i in range(num_3x3)])
        self.conv2 = make_conv(width, out_channels, 1, ws=ws)
        self.se = SqueezeExcite(out_channels, max(1, int(out_channels * se_ratio))) if se_ratio > 0 else None
        self.drop_path = StochasticDepth(stochdepth_rate)
        self.skip_gain = nn.Parameter(torch.tensor(float(skip_gain_init)))
        self.transition = stride > 1 or in_channels != out_channels
        self.shortcut = None
        if self.transition and avg_down:                                     # NFNets: ResNet-D shortcut
            pool = nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
            self.shortcut = nn.Sequential(pool, make_conv(in_channels, out_channels, 1, ws=ws))
        elif self.transition:                                                # NF-ResNets: strided 1x1 convolution
            self.shortcut = make_conv(in_channels, out_channels, 1, stride=stride, ws=ws)

    def residual(self, x: Tensor) -> Tensor:                                  # (B, C_in, H, W), x = gamma g(h) / beta
        """f_i of the block, before stochastic depth and the skip gain."""
        f = self.conv0(x)                                                     # (B, width, H, W)
        for conv in self.convs_3x3:
            f = conv(self.act(f))                                             # (B, width, H/s, W/s)
        f = self.conv2(self.act(f))                                           # (B, C_out, H/s, W/s)
        if self.se is not None:
            f = 2.0 * self.se(f) * f
        return f

    def forward(self, h: Tensor) -> Tensor:                                   # (B, C_in, H, W)
        check_shape(h, "B C H W", C=self.in_channels)
        x = self.act(h) / self.beta                                           # unit variance at init
        shortcut = self.shortcut(x) if self.transition else h                 # (B, C_out, H/s, W/s)
        return shortcut + self.alpha * self.skip_gain * self.drop_path(self.residual(x))

    def extra_repr(self) -> str:
        return f"beta={self.beta:.4f}, alpha={self.alpha}, transition={self.transition}"
