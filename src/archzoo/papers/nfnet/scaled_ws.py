r"""Scaled Weight Standardization and gamma-scaled nonlinearities (Brock, De & Smith 2021, arXiv:2101.08692,
Sec. 4.2-4.3; used unchanged by NFNets, Brock et al. 2021, arXiv:2102.06171, Sec. 3).

A normalizer-free network keeps its activations near unit variance by construction instead of by measurement.
Two pieces do it inside a residual branch:

- every convolution standardizes its own weights per output channel (Sec. 4.2 of 2101.08692),

      \hat{W}_{ij} = \gamma_g \cdot \frac{W_{ij} - \mu_i}{\sigma_i \sqrt{N}},      N = fan-in,

  so that the output of a unit with zero-mean, unit-variance, uncorrelated inputs has zero mean (no mean shift,
  the failure of He init that Fig. 2 of 2101.08692 shows) and the input's second moment, times a learnable
  per-channel gain g;
- every nonlinearity g(.) is followed by a constant gamma with gamma^2 Var(g(z)) = 1 for z ~ N(0, 1), so that
  gamma g(z) has unit variance: for ReLU gamma = sqrt(2 / (1 - 1/pi)) (Sec. 4.3), for
  GELU gamma ~ 1.7015. We keep the authors' released constants for GELU and SiLU, estimated by sampling; the
  exact values (numerical integration) differ by < 0.1%.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer

GAMMA = {
    "relu": math.sqrt(2.0 / (1.0 - 1.0 / math.pi)),   # 1.7139588594..., 1 / std(relu(z)), Sec. 4.3 of 2101.08692
    "gelu": 1.7015043497085571,                        # 1 / std(gelu(z)), the authors' sampled estimate (1.70093)
    "silu": 1.7881293296813965,                        # 1 / std(silu(z)), likewise (1.78719); Swish in Sec. 4.3
    "identity": 1.0,
}
_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "identity": lambda x: x}


class ScaledActivation(nn.Module):
    """A nonlinearity followed by its constant gamma, gamma * g(x) (Sec. 4.3 of 2101.08692).

    `gamma=None` takes the constant of `GAMMA` that gives unit variance for a unit Gaussian input; `gamma=1.0` is the
    bare nonlinearity (what a net with He-initialised convolutions uses: He init carries the gain itself).
    """

    def __init__(self, name: str = "gelu", gamma: float | None = None):
        super().__init__()
        if name not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {name!r}")
        self.name, self.gamma = name, GAMMA[name] if gamma is None else float(gamma)

    def forward(self, x: Tensor) -> Tensor:
        return _ACTIVATIONS[self.name](x) * self.gamma

    def extra_repr(self) -> str:
        return f"{self.name}, gamma={self.gamma:.6f}"


@register_layer(paper="nfnet")
class ScaledStdConv2d(nn.Conv2d):
    r"""A 2-D convolution with Scaled Weight Standardization (arXiv:2101.08692 Sec. 4.2; NFNets Sec. 3).

    The stored weight W (C_out, C_in/groups, k, k) is re-standardized at every forward pass, per output channel i
    over its fan-in N = C_in/groups * k * k:

        \hat{W}_i = g_i \cdot (W_i - \mu_i) / \sqrt{\max(\sigma_i^2 N, \epsilon)}

    mu_i and sigma_i^2 are the mean and (biased) variance of row i, g_i a learnable gain initialised at 1. The
    epsilon (1e-4) only guards a constant row: with it inside the max, as in the authors' release, a healthy row is
    standardized exactly, so \hat{W}_i has mean 0 and variance g_i^2 / N. The gradient flows through mu_i and
    sigma_i (the standardization is part of the function). The convolution keeps its bias (zero at init).
    `padding=None` is k // 2 (symmetric "same" padding).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, dilation: int = 1, groups: int = 1, bias: bool = True,
                 gain_init: float = 1.0, eps: float = 1e-4):
        padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias)
        self.gain = nn.Parameter(torch.full((out_channels, 1, 1, 1), float(gain_init)))
        self.eps = eps
        nn.init.kaiming_normal_(self.weight, nonlinearity="linear")   # any scale: the standardization removes it
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def fan_in(self) -> int:
        return self.weight[0].numel()                                      # N = C_in/groups * k * k

    def standardized_weight(self) -> Tensor:
        """\\hat{W} of Scaled WS (2101.08692 Sec. 4.2), (C_out, C_in/groups, k, k).

        The moments in two passes (the mean, then the mean of squared deviations): the same numbers as
        `torch.var_mean`, whose kernel is 2x slower on a CPU, which shows in NFNets' 70M+ weights."""
        centered = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)                 # W_i - mu_i
        var = centered.square().mean(dim=(1, 2, 3), keepdim=True)                              # sigma_i^2 (biased)
        scale = torch.rsqrt(torch.clamp(var * self.fan_in, min=self.eps)) * self.gain          # g_i / (sigma_i sqrt N)
        return centered * scale

    def forward(self, x: Tensor) -> Tensor:                                # (B, C_in, H, W)
        check_shape(x, "B C H W", C=self.in_channels)
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)                                       # (B, C_out, H/s, W/s)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", eps={self.eps}"
