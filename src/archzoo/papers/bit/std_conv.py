r"""BiT's weight-standardized convolution as released (Kolesnikov et al. 2019, arXiv:1912.11370, Sec. 4.3; the
authors' code, github.com/google-research/big_transfer, `bit_pytorch/models.py`: `StdConv2d`).

BiT standardizes the weights of every convolution (Weight Standardization, Qiao et al. 2019), in the form of its
release: per output channel i, over the fan-in, with the *biased* variance and epsilon inside the square root,

    \hat{W}_i = (W_i - \mu_i) / \sqrt{\sigma_i^2 + \epsilon},   \epsilon = 10^{-10},     y = \hat{W} * x

The WS paper's own layer (`weight_standardization.WSConv2d`) divides by the unbiased standard deviation plus 1e-5
instead: a factor \sqrt{n / (n - 1)} per row (n = fan-in) and a different epsilon, small but enough that released
BiT weights would not reproduce their logits (a randomly initialised R50x1 differs by ~2e-3 in its logits). Hugging
Face's port (`transformers`, `BitForImageClassification`) standardizes the same way with epsilon = 1e-8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer

EPS = 1e-10         # the release's epsilon, inside the square root


@register_layer(paper="bit")
class StdConv2d(nn.Conv2d):
    r"""A 2-D convolution with BiT's weight standardization: y = \hat{W} * x + b, \hat{W} as in the module docstring.

    A drop-in `nn.Conv2d` (the same arguments and parameters; the standardization adds none) with `eps`.
    `reference_forward` standardizes as written above; `forward` computes the same \hat{W} as a LayerNorm of each
    filter over its fan-in, without affine parameters (`F.layer_norm`: the same mean, biased variance and epsilon
    inside the root, in one fused kernel). The tests check that the two agree, gradients included.
    """

    def __init__(self, *args, eps: float = EPS, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps

    def standardized_weight(self) -> Tensor:
        """\\hat{W}, (C_out, C_in/groups, kH, kW), with `F.layer_norm` over each filter's fan-in."""
        w = self.weight.flatten(1)                                          # (C_out, fan-in)
        return F.layer_norm(w, w.shape[1:], eps=self.eps).view_as(self.weight)

    def reference_standardized_weight(self) -> Tensor:
        """\\hat{W} written out: (W - mean) / sqrt(biased variance + eps) per output channel."""
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), correction=0, keepdim=True)   # sigma_i^2, mu_i
        return (self.weight - mean) / torch.sqrt(var + self.eps)

    def forward(self, x: Tensor) -> Tensor:                                 # (B, C_in, H, W)
        check_shape(x, "B C H W", name="input", C=self.in_channels)
        return self._conv_forward(x, self.standardized_weight(), self.bias)            # (B, C_out, H', W')

    def reference_forward(self, x: Tensor) -> Tensor:                       # (B, C_in, H, W)
        check_shape(x, "B C H W", name="input", C=self.in_channels)
        return self._conv_forward(x, self.reference_standardized_weight(), self.bias)  # (B, C_out, H', W')

    def extra_repr(self) -> str:
        return super().extra_repr() + f", eps={self.eps}"
