r"""Local response normalization (Krizhevsky, Sutskever & Hinton 2012, NeurIPS, Sec. 3.3).

Each activity a^i_{x,y} (kernel map i at position (x, y), after the ReLU) is divided by the energy of the n
"adjacent" kernel maps at the same position, a form of lateral inhibition that makes big activities compete
across kernels:

    b^i_{x,y} = a^i_{x,y} / ( k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} (a^j_{x,y})^2 )^beta

N is the number of kernels in the layer; the paper's constants are k = 2, n = 5, alpha = 1e-4, beta = 0.75.
The sum is clipped at the ends of the channel axis (no wrap-around).

torch.nn.LocalResponseNorm computes the same window but divides alpha by n,
b = a / (k + (alpha / n) * sum_j a_j^2)^beta, so the paper's layer is `nn.LocalResponseNorm(5, alpha=5e-4,
beta=0.75, k=2)` there (alpha_torch = n * alpha_paper); the test checks both against the formula in float64.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer


@register_layer(paper="alexnet")
class LocalResponseNorm(nn.Module):
    r"""Local response normalization across channels, Sec. 3.3 of the paper, with the paper's alpha.

        b^i = a^i / (k + alpha * sum_{|j - i| <= n/2, 0 <= j < N} (a^j)^2)^beta

    `size` is n and must be odd, so that the window i - n/2 .. i + n/2 (n/2 rounded down) holds exactly n maps.
    It has no parameters. Accepts (B, C, H, W) or any (B, C, ...) input.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"size (n) must be a positive odd number so the window i-n/2..i+n/2 holds n maps, "
                             f"got {size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, a: Tensor) -> Tensor:                                      # (B, N, *spatial)
        dims = check_shape(a, "B N ...", name="input", dtype="float")
        half = self.size // 2
        squares = F.pad(a.square(), (0,) * (2 * (a.dim() - 2)) + (half, half))  # (B, N + n - 1, *spatial), zeros
        energy = sum(squares[:, d:d + dims["N"]] for d in range(self.size))     # sum_j (a^j)^2, (B, N, *spatial)
        return a / (self.k + self.alpha * energy).pow(self.beta)                 # b^i, Sec. 3.3

    def extra_repr(self) -> str:
        return f"n={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
