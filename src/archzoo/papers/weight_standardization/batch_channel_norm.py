r"""Batch-Channel Normalization (Qiao et al. 2019, arXiv:1903.10520, Sec. 4, Algorithm 1).

Channel-based normalizations (GN, LN) keep every sample's statistics to itself, so they work at any batch
size, but they let a network drift towards *elimination singularities* (channels that are always inactive or
always active, Sec. 4.1), which batch statistics prevent. BCN normalizes with both: first with batch knowledge,
per channel, then with the channel normalization (GN) per sample and group.

In micro-batch training a batch of 1-2 images gives useless batch statistics, so the batch part uses
*estimates* \hat{\mu}_c, \hat{\sigma}_c^2 that move towards each micro-batch's statistics at an update rate r
and are constants for back-propagation (Algorithm 1):

    \mu_c = mean(x[:, c]),   \sigma_c^2 = var(x[:, c])                  over (B, H, W) of the micro-batch
    \hat{\mu}_c <- \hat{\mu}_c + r (\mu_c - \hat{\mu}_c)
    \hat{\sigma}_c^2 <- \hat{\sigma}_c^2 + r (\sigma_c^2 - \hat{\sigma}_c^2)
    \dot{x} = \gamma_b (x - \hat{\mu}_c) / \sqrt{\hat{\sigma}_c^2 + \epsilon} + \beta_b
    y = GN(\dot{x})  (its own per-channel \gamma_c, \beta_c)

In evaluation the estimates are used without being updated. With r = 1 the forward pass of a training step is
exactly BN (with batch statistics) followed by GN.

`BatchChannelNorm.reference_forward` is Algorithm 1 written out; `forward` computes the same function with
PyTorch's fused kernels: the batch part is `F.batch_norm` in inference mode (it normalises with given statistics,
here the estimates, which receive no gradient), the channel part `F.group_norm`. The tests check that the two
agree (outputs, gradients, estimates).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer
from ..group_norm.group_norm import GroupNorm


@register_layer(paper="weight_standardization")
class BatchChannelNorm(nn.Module):
    r"""Micro-batch Batch-Channel Normalization (Sec. 4, Algorithm 1) for (B, C, H, W) activations.

    `momentum` is the update rate r of the estimates \hat{\mu}, \hat{\sigma}^2 (buffers `running_mean`,
    `running_var`, initialised to 0 and 1); `num_groups` the G of the channel normalization (GN). The batch part
    has its own per-channel gamma_b, beta_b (`weight`, `bias`), the GN its gamma_c, beta_c
    (`channel_norm.weight`, `channel_norm.bias`). The biased (1/(BHW)) variance of the micro-batch is used, as
    BN does for normalization, and eps = 1e-5 in both parts.
    """

    def __init__(self, num_channels: int, num_groups: int = 32, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"the update rate r (momentum) must be in (0, 1], got {momentum}")
        self.num_channels, self.momentum, self.eps = num_channels, momentum, eps
        self.weight = nn.Parameter(torch.ones(num_channels))               # gamma_b
        self.bias = nn.Parameter(torch.zeros(num_channels))                # beta_b
        self.register_buffer("running_mean", torch.zeros(num_channels))    # \hat{\mu}
        self.register_buffer("running_var", torch.ones(num_channels))      # \hat{\sigma}^2
        self.channel_norm = GroupNorm(num_groups, num_channels, eps=eps)   # CN with gamma_c, beta_c

    @torch.no_grad()
    def update_estimates(self, x: Tensor) -> None:
        """Lines 1-2 of Algorithm 1: move \\hat{mu}, \\hat{sigma}^2 towards this micro-batch's statistics by r."""
        mean = x.mean((0, 2, 3), keepdim=True)                             # mu_c, (1, C, 1, 1)
        var = (x - mean).square_().mean((0, 2, 3))                         # sigma_c^2, (C,); two passes
        self.running_mean.lerp_(mean.view(-1).to(self.running_mean.dtype), self.momentum)
        self.running_var.lerp_(var.to(self.running_var.dtype), self.momentum)

    def forward(self, x: Tensor) -> Tensor:                                # (B, C, H, W)
        """The fast path: `reference_forward`'s function in PyTorch's fused kernels."""
        check_shape(x, "B C H W", name="input", dtype="float", C=self.num_channels)
        if self.training:
            self.update_estimates(x)
        x = F.batch_norm(x, self.running_mean.clone(), self.running_var.clone(), self.weight, self.bias,
                         training=False, eps=self.eps)                     # normalise with the estimates
        return self.channel_norm(x)                                        # (B, C, H, W), F.group_norm

    def reference_forward(self, x: Tensor) -> Tensor:                      # (B, C, H, W)
        """Algorithm 1 written out."""
        check_shape(x, "B C H W", name="input", dtype="float", C=self.num_channels)
        if self.training:
            self.update_estimates(x)
        mean = self.running_mean.view(1, -1, 1, 1).clone()                 # constants for back-propagation
        std = torch.sqrt(self.running_var.view(1, -1, 1, 1) + self.eps)
        x = (x - mean) / std * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)   # batch knowledge
        return self.channel_norm.reference_forward(x)                      # (B, C, H, W), channel normalization

    def extra_repr(self) -> str:
        groups = self.channel_norm.num_groups
        return f"{self.num_channels}, num_groups={groups}, momentum={self.momentum}, eps={self.eps}"
