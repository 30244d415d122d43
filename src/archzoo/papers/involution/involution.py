r"""The involution operator (Li et al. 2021, arXiv:2103.06255, Sec. 3, Eq. 4-6, Fig. 2).

Convolution is spatial-agnostic and channel-specific: one K x K kernel per (output, input) channel pair,
shared by every location. Involution inverts both properties: one K x K kernel per *location*, shared by the
C/G channels of each of G groups. The kernel is not a parameter but is generated from the feature vector at
that location,

    H_{i,j} = \phi(X_{\Psi_{i,j}}) = \phi(X_{i,j}) = W_1 \sigma(W_0 X_{i,j})                   (Eq. 5, 6)

with W_0 \in R^{C/r x C}, W_1 \in R^{(K K G) x C/r} and \sigma = BN + ReLU, and it is applied by a
multiply-add over the K x K neighbourhood:

    Y_{i,j,k} = \sum_{(u,v) \in \Delta_K} H_{i,j,u+\lfloor K/2 \rfloor,v+\lfloor K/2 \rfloor,\lceil kG/C \rceil}
                X_{i+u,j+v,k}                                                                  (Eq. 4)

With stride s the kernels are generated from X average-pooled s x s (one kernel per output location) and the
neighbourhoods are taken every s pixels. The output has the input's C channels: involution mixes space, not
channels (the 1x1 convolutions around it in a RedNet block do that).
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer


@register_layer(paper="involution")
class Involution(nn.Module):
    r"""Involution (Sec. 3, Eq. 4-6): a K x K kernel generated per location, shared within each channel group.

    `channels` C, `kernel_size` K, `stride` s, `group_channels` C/G (16 in the paper), `reduction` r (4 in the
    paper). The kernel generation function \phi (Eq. 6) is two 1x1 convolutions: W_0 (C -> C/r, no bias, then
    BN and ReLU: \sigma) and W_1 (C/r -> K*K*G, with bias). Parameters: C^2/r + 2C/r + (C/r + 1) K^2 G.
    """

    def __init__(self, channels: int, kernel_size: int = 7, stride: int = 1, group_channels: int = 16,
                 reduction: int = 4):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centred K x K neighbourhood), got {kernel_size}")
        if channels % group_channels or channels % reduction:
            raise ValueError(f"channels ({channels}) must be divisible by group_channels ({group_channels}) "
                             f"and by reduction ({reduction})")
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.groups = channels // group_channels                                       # G
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()   # X_{Psi_ij}
        self.reduce = nn.Conv2d(channels, channels // reduction, 1, bias=False)        # W_0
        self.sigma = nn.Sequential(nn.BatchNorm2d(channels // reduction), nn.ReLU(inplace=True))   # sigma
        self.span = nn.Conv2d(channels // reduction, kernel_size**2 * self.groups, 1)  # W_1

    def kernel(self, x: Tensor) -> Tensor:                                   # (B, C, H, W)
        """The generated kernels H (Eq. 6), one K x K kernel per group and output location: (B, G, K*K, H', W')."""
        h = self.span(self.sigma(self.reduce(self.pool(x))))                 # (B, K*K*G, H', W')
        return rearrange(h, "b (g kk) h w -> b g kk h w", g=self.groups)

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C, H, W)
        """Eq. 4 as the paper's pseudo-code (Alg. 1) computes it: unfold the K x K neighbourhoods, multiply, sum."""
        dims = check_shape(x, "B C H W", name="input", C=self.channels)
        kernel = self.kernel(x)                                              # H, (B, G, K*K, H', W')
        h_out, w_out, k = *kernel.shape[-2:], self.kernel_size
        patches = F.unfold(x, k, padding=k // 2, stride=self.stride)         # (B, C*K*K, H'*W'), X_{i+u, j+v, k}
        patches = rearrange(patches, "b (g c kk) (h w) -> b g c kk h w", g=self.groups, kk=k * k, h=h_out, w=w_out)
        y = (kernel.unsqueeze(2) * patches).sum(3)                           # sum over Delta_K, (B, G, C/G, H', W')
        return y.reshape(dims["B"], self.channels, h_out, w_out)             # (B, C, H', W')

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, groups={self.groups}"
