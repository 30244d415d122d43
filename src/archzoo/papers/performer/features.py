r"""Random features for the softmax kernel (Choromanski et al. 2020, arXiv:2009.14794, Sec. 2.2-2.4).

A kernel K(x, y) = E_w[phi(x)^T phi(y)] with a random feature map

    phi(x) = h(x) / \sqrt{m} (f_1(w_1^T x), ..., f_1(w_m^T x), ..., f_l(w_1^T x), ..., f_l(w_m^T x))     (Sec. 2.2)

turns attention into (Q' (K'^T V)): linear in the sequence length. For the softmax kernel
SM(x, y) = exp(x^T y) the paper gives three maps, all unbiased:

- trigonometric (Sec. 2.3, the Random Fourier Features of the Gaussian kernel): h(x) = exp(|x|^2 / 2),
  f = (sin, cos); `trigonometric_features`. Its estimates can be negative.
- positive (Lemma 1, FAVOR+): h(x) = exp(-|x|^2 / 2), f = exp,

      SM(x, y) = E_{w ~ N(0, I_d)}[exp(w^T x - |x|^2/2) exp(w^T y - |y|^2/2)];      `positive_features`

- positive hyperbolic (Lemma 1, cosh form): h(x) = exp(-|x|^2 / 2) / \sqrt{2}, f = (exp(u), exp(-u));
  `hyperbolic_features`.

Lemma 2 gives the mean squared error of each for i.i.d. w (`softmax_kernel_mse`): the trigonometric one
grows like SM(x, y)^{-2} where the kernel is small, the positive one vanishes there. The generalized
(ReLU) attention of Sec. 2.2 uses h = 1, f = ReLU (`relu_features`).

The w_i are drawn by `draw_projection`: i.i.d. Gaussian, or orthogonal (Sec. 2.4, ORFs): exactly
orthogonal within blocks of d rows, each row rescaled to a chi(d)-distributed norm so that it is
marginally N(0, I_d) (or to the fixed norm \sqrt{d}); Theorem 2 shows orthogonality lowers the MSE.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

KERNELS = ("softmax", "softmax_trig", "softmax_hyp", "relu")
SCALINGS = ("chi", "sqrt_d")


def draw_projection(num_features: int, dim: int, *, orthogonal: bool = True, scaling: str = "chi",
                    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """The random projection W = (w_1, ..., w_m)^T, shape (m, d) (Sec. 2.4).

    `orthogonal=False`: i.i.d. rows w_i ~ N(0, I_d). `orthogonal=True`: ceil(m / d) independent blocks, each
    the rows of a Haar-random d x d orthogonal matrix (QR of a Gaussian matrix with the signs of R's diagonal
    fixed), the last block cut to the remaining rows; `scaling="chi"` gives every row the norm of an
    independent N(0, I_d) vector (chi with d degrees of freedom), so each w_i is still marginally Gaussian,
    `scaling="sqrt_d"` gives every row the norm sqrt(d). Draws use `generator` (default: the global RNG).
    """
    if num_features < 1 or dim < 1:
        raise ValueError(f"num_features and dim must be >= 1, got {num_features} and {dim}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    kw = dict(generator=generator, dtype=torch.float64)
    if not orthogonal:
        w = torch.randn(num_features, dim, **kw)
        if scaling == "sqrt_d":
            w = w * (math.sqrt(dim) / w.norm(dim=1, keepdim=True))
        return w.to(device=device, dtype=dtype)
    blocks = -(-num_features // dim)
    q, r = torch.linalg.qr(torch.randn(blocks, dim, dim, **kw))               # (blocks, d, d)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)      # Haar: columns times sign(R_ii)
    rows = q.transpose(-2, -1).reshape(blocks * dim, dim)[:num_features]       # orthonormal rows within a block
    if scaling == "chi":
        norms = torch.randn(num_features, dim, **kw).norm(dim=1, keepdim=True)   # |g|, g ~ N(0, I_d)
    else:
        norms = torch.full((num_features, 1), math.sqrt(dim), dtype=torch.float64)
    return (rows * norms).to(device=device, dtype=dtype)


def positive_log_features(x: Tensor, omega: Tensor) -> Tensor:
    """log phi^+(x) = w_i^T x - |x|^2 / 2 - log(m) / 2 for each of the m features: (..., d) -> (..., m) (Lemma 1).

    One matrix product: x is extended by the column -|x|^2/2 - log(m)/2 and W by a column of ones.
    """
    m = omega.shape[0]
    x_ext = torch.cat([x, -0.5 * x.pow(2).sum(-1, keepdim=True) - 0.5 * math.log(m)], dim=-1)   # (..., d + 1)
    omega_ext = F.pad(omega, (0, 1), value=1.0)                                                  # (m, d + 1)
    return x_ext @ omega_ext.transpose(0, 1)


def positive_features(x: Tensor, omega: Tensor) -> Tensor:
    """phi^+(x) = exp(-|x|^2 / 2) / sqrt(m) (exp(w_1^T x), ..., exp(w_m^T x)): (..., d) -> (..., m) (Lemma 1)."""
    return positive_log_features(x, omega).exp()


def hyperbolic_log_features(x: Tensor, omega: Tensor) -> Tensor:
    """log phi^{hyp+}(x) = (+-w_i^T x - |x|^2/2 - log(2m)/2)_i: (..., d) -> (..., 2m) (Lemma 1, cosh form).

    These are the positive features of the 2m vectors (w_1, ..., w_m, -w_1, ..., -w_m).
    """
    return positive_log_features(x, torch.cat([omega, -omega]))


def hyperbolic_features(x: Tensor, omega: Tensor) -> Tensor:
    """phi^{hyp+}(x) = exp(-|x|^2/2) / sqrt(2m) (exp(w_i^T x), exp(-w_i^T x))_i: (..., d) -> (..., 2m) (Lemma 1)."""
    return hyperbolic_log_features(x, omega).exp()


def trigonometric_features(x: Tensor, omega: Tensor) -> Tensor:
    """phi^{trig}(x) = exp(|x|^2 / 2) / sqrt(m) (sin(w_i^T x), cos(w_i^T x))_i: (..., d) -> (..., 2m) (Sec. 2.3)."""
    u = x @ omega.transpose(0, 1)                                              # (..., m)
    h = torch.exp(0.5 * x.pow(2).sum(-1, keepdim=True)) / math.sqrt(omega.shape[0])
    return h * torch.cat([torch.sin(u), torch.cos(u)], dim=-1)


def relu_features(x: Tensor, omega: Tensor, kernel_eps: float = 0.0) -> Tensor:
    """phi(x) = ReLU(w_i^T x) / sqrt(m) + eps: the generalized attention of Sec. 2.2 with f = ReLU, h = 1.

    Its kernel is the arc-cosine kernel of degree 1 (Cho & Saul 2009), |x||y| (sin t + (pi - t) cos t) / (2 pi)
    with t the angle between x and y. `kernel_eps` (0.001 in the official implementation) keeps every
    feature positive so that no denominator is zero.
    """
    return F.relu(x @ omega.transpose(0, 1)) / math.sqrt(omega.shape[0]) + kernel_eps


def random_features(x: Tensor, omega: Tensor, kernel: str) -> Tensor:
    """phi(x) of `kernel` ("softmax" = positive, "softmax_trig", "softmax_hyp", "relu"), without stabilization."""
    if kernel == "softmax":
        return positive_features(x, omega)
    if kernel == "softmax_hyp":
        return hyperbolic_features(x, omega)
    if kernel == "softmax_trig":
        return trigonometric_features(x, omega)
    if kernel == "relu":
        return relu_features(x, omega)
    raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")


def softmax_kernel_mse(x: Tensor, y: Tensor, m: int, kernel: str) -> Tensor:
    """Lemma 2: the MSE of the m-feature estimate of SM(x, y) = exp(x^T y) with i.i.d. w, per pair (..., d) -> (...).

        MSE(trig) = 1/(2m) exp(|x + y|^2) SM^{-2}(x, y) (1 - exp(-|x - y|^2))^2
        MSE(+)    = 1/m    exp(|x + y|^2) SM^2(x, y)    (1 - exp(-|x + y|^2))
        MSE(hyp+) = 1/2 (1 - exp(-|x + y|^2)) MSE(+)
    """
    sm = torch.exp((x * y).sum(-1))
    s, d = (x + y).pow(2).sum(-1), (x - y).pow(2).sum(-1)
    if kernel == "softmax_trig":
        return torch.exp(s) / sm.pow(2) * (1 - torch.exp(-d)).pow(2) / (2 * m)
    positive = torch.exp(s) * sm.pow(2) * (1 - torch.exp(-s)) / m
    if kernel == "softmax":
        return positive
    if kernel == "softmax_hyp":
        return 0.5 * (1 - torch.exp(-s)) * positive
    raise ValueError(f"Lemma 2 covers the softmax kernels softmax, softmax_hyp, softmax_trig; got {kernel!r}")
