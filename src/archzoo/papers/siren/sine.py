r"""The sine layer and its principled initialisation (Sitzmann et al. 2020, arXiv:2006.09661, Sec. 3.1-3.2,
Appendix 1).

A SIREN layer maps x_i to

    \phi_i(x_i) = \sin(\omega_0 (W_i x_i + b_i))                                           (Eq. 5, Sec. 3.2)

The initialisation keeps the distribution of every layer's activations the same at any depth (Theorem 1,
Appendix 1.3): with inputs arcsine-distributed on [-1, 1] and hidden weights w ~ U(-c/\sqrt{n}, c/\sqrt{n}), the
pre-activation \omega_0 (W x + b) is close to N(0, c^2/6) (central limit theorem over n inputs of variance 1/2)
and its sine is arcsine-distributed again. The paper picks c = \sqrt{6}, so that the pre-activations have unit
standard deviation; with \omega_0 multiplied in (which scales the gradients of W by \omega_0, Appendix 1.5) the
hidden weights are drawn from U(-\sqrt{6/n}/\omega_0, \sqrt{6/n}/\omega_0). The first layer's weights are drawn
from U(-1/n, 1/n) and its \omega_0 = 30 makes \sin(\omega_0 W x) span several periods over [-1, 1]
(Sec. 3.2, "Initialization"). The biases keep PyTorch's default U(-1/\sqrt{n}, 1/\sqrt{n}), as in the authors'
code.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

FIRST_OMEGA_0 = 30.0          # Sec. 3.2: omega_0 = 30 in the first layer (and, in the authors' code, in the others)
INIT_C = math.sqrt(6.0)       # Sec. 3.2 / Appendix 1.3: c = sqrt(6) gives pre-activations of unit variance


def first_layer_bound(fan_in: int) -> float:
    """The first layer's weights are U(-1/n, 1/n) (Sec. 3.2; the authors' code)."""
    return 1.0 / fan_in


def hidden_layer_bound(fan_in: int, omega_0: float, c: float = INIT_C) -> float:
    """Hidden weights are U(-c/sqrt(n)/omega_0, c/sqrt(n)/omega_0), c = sqrt(6) (Sec. 3.2, Appendix 1.3)."""
    return c / math.sqrt(fan_in) / omega_0


class SineLayer(nn.Module):
    """One SIREN layer, x (..., in_features) -> sin(omega_0 (W x + b)) (..., out_features) (Eq. 5).

    `is_first` selects the first layer's initialisation U(-1/n, 1/n), else the hidden layers'
    U(-sqrt(6/n)/omega_0, sqrt(6/n)/omega_0); `c` replaces sqrt(6) in the latter (the paper's ablation of
    the scale; PyTorch's default `nn.Linear` draws with c = 1 and omega_0 = 1).
    """

    def __init__(self, in_features: int, out_features: int, omega_0: float = FIRST_OMEGA_0, is_first: bool = False,
                 c: float = INIT_C):
        super().__init__()
        if in_features < 1 or out_features < 1 or omega_0 <= 0:
            raise ValueError(f"need in_features, out_features >= 1 and omega_0 > 0, got {in_features}, "
                             f"{out_features} and {omega_0}")
        self.omega_0, self.is_first = float(omega_0), is_first
        self.linear = nn.Linear(in_features, out_features)
        bound = first_layer_bound(in_features) if is_first else hidden_layer_bound(in_features, omega_0, c)
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def preactivation(self, x: Tensor) -> Tensor:          # (..., in) -> (..., out)
        """omega_0 (W x + b): what the sine is applied to (N(0, 1) at init for hidden layers, Theorem 1).

        Computed as (omega_0 W) x + omega_0 b, the same function with omega_0 applied to the (out, in) weights
        instead of the (..., out) outputs: one pass less over the activations, forward and backward."""
        return F.linear(x, self.omega_0 * self.linear.weight, self.omega_0 * self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.preactivation(x))

    def extra_repr(self) -> str:
        return f"omega_0={self.omega_0:g}, is_first={self.is_first}"


def sine_activations(layers, x: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Run `x` through `layers` (SineLayers), returning each layer's (pre-activation, activation)."""
    out = []
    for layer in layers:
        z = layer.preactivation(x)
        x = torch.sin(z)
        out.append((z, x))
    return out


def arcsine_cdf(y: np.ndarray) -> np.ndarray:
    """The CDF of the arcsine distribution on [-1, 1], 1/2 + arcsin(y)/pi: the law of sin(U) for a uniform phase U
    (Lemma 1.1 of Appendix 1), and of a sine layer's activations at init (Theorem 1)."""
    return 0.5 + np.arcsin(np.clip(y, -1.0, 1.0)) / np.pi


def ks_distance(samples: Tensor, cdf) -> float:
    """The Kolmogorov-Smirnov distance sup_y |F_n(y) - F(y)| between the samples' empirical CDF F_n and `cdf`."""
    y = np.sort(samples.detach().double().flatten().cpu().numpy())
    f, n = cdf(y), len(y)
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def normal_cdf(y: np.ndarray) -> np.ndarray:
    """The standard normal CDF: the law of the hidden pre-activations at init (Theorem 1, c = sqrt(6))."""
    from scipy import stats

    return stats.norm.cdf(y)
