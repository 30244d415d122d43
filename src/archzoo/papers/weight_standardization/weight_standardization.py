r"""Weight Standardization (Qiao, Wang, Liu, Shen & Yuille 2019, arXiv:1903.10520, Sec. 3).

A convolution y = \hat{W} * x (Eq. 5) whose weights are re-standardized at every forward pass, per output
channel i over its fan-in (C_in, kH, kW), I = C_in * kH * kW entries (Eq. 6):

    \hat{W}_{i,j} = (W_{i,j} - \mu_{W_i}) / \sigma_{W_i},    \mu_{W_i} = 1/I \sum_j W_{i,j}

The loss is optimised on the raw W; \hat{W} = WS(W) is a differentiable reparameterisation, so the gradient
passes through mu and sigma. Writing \dot{W} = W - mu (centring) and \hat{W} = \dot{W} / sigma (scaling), the
gradients are (Eq. 7-8, with the 1/(I-1) of the unbiased sigma used here in place of the paper's 1/I)

    \nabla_{\dot{W}_i} L = 1/\sigma_i (\nabla_{\hat{W}_i} L - <\hat{W}_i, \nabla_{\hat{W}_i} L> \hat{W}_i / (I-1))
    \nabla_{W_i} L = \nabla_{\dot{W}_i} L - mean_j(\nabla_{\dot{W}_i} L)

so the gradient on the raw weights has zero mean per output channel and is orthogonal to W_i - mu_i: it
subtracts two non-negative terms from the squared gradient norm (Eq. 9), the paper's argument that WS lowers
the Lipschitz constants of the loss and of its gradients (Eq. 9-10) and so smooths the landscape.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer

EPS = 1e-5     # added to sigma, as in the authors' released PyTorch layer


def standardize_weight(weight: Tensor, eps: float = EPS) -> Tensor:
    r"""\hat{W} of Eq. 6: each output channel (row 0 of `weight`) minus its mean, divided by its std + eps.

    The paper writes sigma = \sqrt{1/I \sum_j W_{i,j}^2 - \mu^2 + \epsilon} (biased variance, eps inside the
    root); the authors' released layer (the one the paper's numbers come from) divides by the *unbiased*
    standard deviation plus eps = 1e-5 outside the root, ``(W - mean) / (W.std() + 1e-5)``. We follow the
    released layer: with eps -> 0 every row of \hat{W} has mean 0 and unbiased variance exactly 1.
    """
    dims = tuple(range(1, weight.dim()))                                 # (C_in, kH, kW): the fan-in of a row
    std, mean = torch.std_mean(weight, dim=dims, keepdim=True)           # sigma_{W_i} (unbiased), mu_{W_i}
    return (weight - mean) / (std + eps)                                 # (C_out, C_in, kH, kW), Eq. 6


@register_layer(paper="weight_standardization")
class WSConv2d(nn.Conv2d):
    r"""A 2-D convolution with Weight Standardization (Sec. 3, Eq. 5-6): y = WS(W) * x + b.

    A drop-in `nn.Conv2d` (same arguments, same parameters: WS adds none), so the class itself is a
    `conv_layer(in_ch, out_ch, kernel_size, stride, padding, bias=False)` for `CifarResNet`. The paper applies
    it to convolutions followed by a normalization layer (GN or BCN), whose gain and shift take over the scale
    and offset that WS removes. `eps` is added to the standard deviation (1e-5, the released layer's value).
    The fan-in must hold at least two weights for the standard deviation to exist.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", eps: float = EPS):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode)
        if self.weight[0].numel() < 2:
            raise ValueError(f"weight standardization needs a fan-in of at least 2, got "
                             f"{in_channels // groups} x {self.kernel_size[0]} x {self.kernel_size[1]}")
        self.eps = eps

    def standardized_weight(self) -> Tensor:
        r"""\hat{W} = WS(W), Eq. 6, (C_out, C_in/groups, kH, kW)."""
        return standardize_weight(self.weight, self.eps)

    def forward(self, x: Tensor) -> Tensor:                              # (B, C_in, H, W)
        check_shape(x, "B C H W", name="input", C=self.in_channels)
        return self._conv_forward(x, self.standardized_weight(), self.bias)   # Eq. 5, (B, C_out, H', W')

    def extra_repr(self) -> str:
        return super().extra_repr() + f", eps={self.eps}"
