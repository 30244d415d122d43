"""Projected gradient descent attacks (Madry et al. 2018, arXiv:1706.06083, Sec. 2.1, Eq. 2), L-inf and L2.

The attacker maximises the classifier's loss within a ball S = {delta : ||delta||_p <= eps} around a clean
input x, by projected steepest ascent from a random point of the ball:

    x^{t+1} = Pi_{x + S} ( x^t + alpha * s(grad_x L(theta, x^t, y)) )

with s(g) = sign(g) for L-inf (the steepest-ascent direction of that norm) and s(g) = g / ||g||_2 for L2; Pi
projects onto the ball (a clamp of each pixel for L-inf, a rescaling of delta for L2) and then onto the valid
pixel range. The default step alpha = 2.5 eps / steps lets a pixel cross the whole ball from any random start;
it is also the authors' setting in "The Odds are Odd" (10 steps of eps / 4, Sec. 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("linf", "l2")


def _flat_norm(t: Tensor) -> Tensor:
    """The L2 norm of each sample of a batch, shaped to broadcast against it: (B, *) -> (B, 1, ..., 1)."""
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (t.dim() - 1))


def project(delta: Tensor, eps: float, norm: str) -> Tensor:
    """Pi_S: the closest point of the eps-ball of `norm` to each perturbation of the batch."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _flat_norm(delta)).clamp(max=1.0)


def random_start(x: Tensor, eps: float, norm: str, generator: torch.Generator | None = None) -> Tensor:
    """A uniform draw from the eps-ball: each pixel in [-eps, eps] (L-inf), or a uniform direction with radius
    eps * u^(1/d), u ~ U(0, 1), which is uniform in the volume of the d-dimensional L2 ball."""
    if norm == "linf":
        return (2 * torch.rand(x.shape, generator=generator, dtype=x.dtype) - 1).to(x.device) * eps
    direction = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    d = x[0].numel()
    radius = eps * torch.rand(len(x), generator=generator, dtype=x.dtype).to(x.device) ** (1.0 / d)
    return direction / _flat_norm(direction) * radius.view(-1, *[1] * (x.dim() - 1))


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str = "linf", steps: int = 10,
        step_size: float | None = None, rand_init: bool = True, bounds: tuple[float, float] = (0.0, 1.0),
        generator: torch.Generator | None = None) -> Tensor:
    """An untargeted PGD attack on any classifier `model(x) -> logits`: adversarial versions of `x` (B, *) with
    ||x_adv - x||_norm <= eps and every pixel within `bounds`.

    The model runs in eval mode (its mode is restored afterwards); only the input gets a gradient.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if eps < 0 or steps < 1:
        raise ValueError(f"eps must be >= 0 and steps >= 1, got eps={eps} and steps={steps}")
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must hold one label per input, shape ({x.shape[0]},), got {tuple(y.shape)}")
    alpha = 2.5 * eps / steps if step_size is None else step_size
    lo, hi = bounds
    x = x.detach()
    delta = random_start(x, eps, norm, generator) if rand_init else torch.zeros_like(x)
    x_adv = (x + delta).clamp(lo, hi)
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")          # L(theta, x, y), per-sample sum
            (grad,) = torch.autograd.grad(loss, x_adv)
            ascent = grad.sign() if norm == "linf" else grad / _flat_norm(grad)
            delta = project(x_adv.detach() + alpha * ascent - x, eps, norm)
            x_adv = (x + delta).clamp(lo, hi)                                  # Pi onto the valid pixel range
    finally:
        model.train(was_training)
    return x_adv.detach()
