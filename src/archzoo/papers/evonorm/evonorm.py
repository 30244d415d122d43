r"""EvoNorm-B0 and EvoNorm-S0 (Liu, Brock, Simonyan, Le 2020, arXiv:2004.02967, Sec. 4, Appendix A).

Both are *normalization-activation* layers: one layer replaces BN followed by ReLU. They were found by the
evolutionary search of `search_space.py` / `evolution.py` and are written here as the paper prints them
(Sec. 4; the TensorFlow pseudocode of Appendix A fixes the details the formulas leave open):

    EvoNorm-B0:  y = x / max( sqrt(s^2_{b,w,h}(x) + eps),  v_1 x + sqrt(s^2_{w,h}(x) + eps) ) * gamma + beta
    EvoNorm-S0:  y = x sigmoid(v_1 x) / sqrt(s^2_{w,h,c/g}(x) + eps) * gamma + beta

`s^2_I` is the *biased* variance over the axes I (`tf.nn.moments` in the Appendix), eps = 1e-5, g = 32 groups,
v_1 and gamma start at ones and beta at zeros (Appendix A). B0 is batch-dependent: in training s^2_{b,w,h} is the
variance of the current batch and a moving average of it is kept, which replaces it at inference, exactly as
BatchNorm does (we use BN's decay 0.9, i.e. PyTorch momentum 0.1). S0 uses no batch statistic at all, so a
sample's output never depends on the other samples, in training or at inference.

Each layer's `reference_forward` is that formula written out (`b0`, `s0`); `forward` runs the same function as one
autograd function with a hand-derived backward (`fused.py`), 4-7x faster on a CPU; the tests check that the two
agree (outputs, gradients, running statistics).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer
from .fused import EvoNormB0Function, EvoNormS0Function, channel


def batch_variance(x: Tensor) -> Tensor:                                    # (B, C, H, W)
    """s^2_{b,w,h}(x): the biased variance over batch and space, per channel, (C,)."""
    return x.var(dim=(0, 2, 3), unbiased=False)


def instance_std(x: Tensor, eps: float = 1e-5) -> Tensor:                   # (B, C, H, W)
    """sqrt(s^2_{w,h}(x) + eps): per sample and channel, (B, C, 1, 1) (Appendix A, `instance_std`)."""
    return torch.sqrt(x.var(dim=(2, 3), unbiased=False, keepdim=True) + eps)


def group_std(x: Tensor, groups: int, eps: float = 1e-5) -> Tensor:         # (B, C, H, W)
    """sqrt(s^2_{w,h,c/g}(x) + eps): per sample and group of C/g channels, broadcast back to (B, C, H, W)
    (Appendix A, `group_std`)."""
    g = rearrange(x, "b (g c) h w -> b g (c h w)", g=groups)
    std = torch.sqrt(g.var(dim=-1, unbiased=False, keepdim=True) + eps)    # (B, g, 1)
    return rearrange(std.expand_as(g), "b g (c h w) -> b (g c) h w", c=x.shape[1] // groups, h=x.shape[2])


def b0(x: Tensor, v1: Tensor, gamma: Tensor, beta: Tensor, batch_var: Tensor | None, eps: float = 1e-5) -> Tensor:
    """EvoNorm-B0 written out: x / max(sqrt(s^2_{b,w,h} + eps), v_1 x + sqrt(s^2_{w,h} + eps)) * gamma + beta, with
    s^2_{b,w,h} = `batch_var` (C,), the moving average in eval, or, None, this batch's (training)."""
    batch_var = batch_variance(x) if batch_var is None else batch_var          # (C,)
    batch_std = channel(torch.sqrt(batch_var + eps))                           # (1, C, 1, 1)
    right = channel(v1) * x + instance_std(x, eps)                             # v_1 x + s_{w,h}, (B, C, H, W)
    return x / torch.maximum(batch_std, right) * channel(gamma) + channel(beta)


def s0(x: Tensor, v1: Tensor, gamma: Tensor, beta: Tensor, groups: int, eps: float = 1e-5) -> Tensor:
    """EvoNorm-S0 written out: x sigmoid(v_1 x) / sqrt(s^2_{w,h,c/g} + eps) * gamma + beta."""
    num = x * torch.sigmoid(channel(v1) * x)                                   # x sigmoid(v_1 x)
    return num / group_std(x, groups, eps) * channel(gamma) + channel(beta)


@register_layer(paper="evonorm")
class EvoNormB0(nn.Module):
    r"""EvoNorm-B0 (Sec. 4, Appendix A): a batch-dependent normalization-activation layer.

        y = x / max( sqrt(s^2_{b,w,h}(x) + eps),  v_1 x + sqrt(s^2_{w,h}(x) + eps) ) * gamma + beta

    The denominator mixes the batch std with an instance std plus a learnable multiple of x; where
    v_1 x + s_{w,h} wins, the layer is non-linear in x (it plays the role of the ReLU it replaces). There is no
    centering anywhere. In eval mode the batch variance is the running average collected in training.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}")
        self.num_channels, self.eps, self.momentum = num_channels, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_channels))              # gamma
        self.bias = nn.Parameter(torch.zeros(num_channels))               # beta
        self.v1 = nn.Parameter(torch.ones(num_channels))                  # v_1, ones (Appendix A)
        self.register_buffer("running_var", torch.ones(num_channels))     # moving average of s^2_{b,w,h}

    def forward(self, x: Tensor) -> Tensor:                                # (B, C, H, W)
        """The fast path (`fused.EvoNormB0Function`), equal to `reference_forward`."""
        check_shape(x, "B C H W", C=self.num_channels)
        return EvoNormB0Function.apply(x, self.v1, self.weight, self.bias, self.running_var, self.training,
                                       self.momentum, self.eps, b0)

    def reference_forward(self, x: Tensor) -> Tensor:                      # (B, C, H, W)
        """The formula written out (`b0`), with the moving average of the batch variance updated in training."""
        check_shape(x, "B C H W", C=self.num_channels)
        if not self.training:
            return b0(x, self.v1, self.weight, self.bias, self.running_var, self.eps)   # the moving average
        var = batch_variance(x)                                            # (C,), this batch
        with torch.no_grad():
            self.running_var.lerp_(var.detach().to(self.running_var.dtype), self.momentum)
        return b0(x, self.v1, self.weight, self.bias, var, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, momentum={self.momentum}"


@register_layer(paper="evonorm")
class EvoNormS0(nn.Module):
    r"""EvoNorm-S0 (Sec. 4, Fig. 1 left, Appendix A): a batch-independent normalization-activation layer.

        y = x sigmoid(v_1 x) / sqrt(s^2_{w,h,c/g}(x) + eps) * gamma + beta

    The numerator is the Swish/SiLU x sigmoid(v_1 x) with a learnable per-channel slope; the denominator is
    GroupNorm's std (no centering). `groups` must divide `num_channels` (the paper uses 32, as GroupNorm).
    """

    def __init__(self, num_channels: int, groups: int = 32, eps: float = 1e-5):
        super().__init__()
        if groups < 1 or num_channels % groups:
            raise ValueError(f"groups ({groups}) must be >= 1 and divide num_channels ({num_channels})")
        self.num_channels, self.groups, self.eps = num_channels, groups, eps
        self.weight = nn.Parameter(torch.ones(num_channels))              # gamma
        self.bias = nn.Parameter(torch.zeros(num_channels))               # beta
        self.v1 = nn.Parameter(torch.ones(num_channels))                  # v_1, ones (Appendix A)

    def forward(self, x: Tensor) -> Tensor:                                # (B, C, H, W)
        """The fast path (`fused.EvoNormS0Function`), equal to `reference_forward`."""
        check_shape(x, "B C H W", C=self.num_channels)
        return EvoNormS0Function.apply(x, self.v1, self.weight, self.bias, self.groups, self.eps, s0)

    def reference_forward(self, x: Tensor) -> Tensor:                      # (B, C, H, W)
        """The formula written out (`s0`)."""
        check_shape(x, "B C H W", C=self.num_channels)
        return s0(x, self.v1, self.weight, self.bias, self.groups, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, eps={self.eps}"
