"""The noise-induced change of the pairwise log-odds (Roth, Kilcher & Hofmann 2019, arXiv:1902.04818, Sec. 3).

A classifier's logits f(x) = (f_1(x), ..., f_K(x)) give the log-odds of class z against class y,

    f_{y,z}(x) = f_z(x) - f_y(x)                                   (Sec. 3.1)

and random noise eta changes them by

    g_{y,z}(x, eta) = f_{y,z}(x + eta) - f_{y,z}(x)                (Sec. 3.2)

On natural inputs the expectation over the noise, gbar_{y,z}(x) = E_eta[g_{y,z}(x, eta)], stays close to a
class-pair specific value; an adversarial example, pushed just across the boundary from its true class z into
the predicted class y, falls back towards z under noise, so gbar_{y,z} is unusually large (Sec. 3.3). The
expectation is a mean over draws; the bias of f cancels in every difference, so any classifier's logits serve
(the paper writes them as <w_y, phi(x)>). As in the authors' code, the noisy input is clipped to the valid
range, and the noise is Gaussian, uniform or Bernoulli (sign), each scaled by its magnitude eps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NOISE_KINDS = ("normal", "uniform", "sign")


def check_noise(noise) -> tuple[tuple[str, float], ...]:
    """`noise`: a sequence of (kind, eps) with kind in NOISE_KINDS and eps > 0."""
    noise = tuple((str(k), float(e)) for k, e in noise)
    for kind, eps in noise:
        if kind not in NOISE_KINDS or not eps > 0:
            raise ValueError(f"noise must be (kind, eps) pairs with kind in {NOISE_KINDS} and eps > 0, "
                             f"got {(kind, eps)}")
    if not noise:
        raise ValueError("noise must name at least one (kind, eps) pair, got none")
    return noise


def draw_noise(kind: str, eps: float, shape: tuple, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """eta = eps * N(0, 1), eps * U(-1, 1) or eps * sign(U(-1, 1)) in every pixel."""
    if kind == "normal":
        unit = torch.randn(shape, generator=generator, dtype=dtype)
    else:
        unit = 2 * torch.rand(shape, generator=generator, dtype=dtype) - 1
        unit = unit.sign() if kind == "sign" else unit
    return eps * unit


def pairwise_log_odds(logits: Tensor) -> Tensor:
    """f_{y,z} = f_z - f_y for every pair: (..., K) -> (..., K, K), entry [..., y, z]."""
    return logits.unsqueeze(-2) - logits.unsqueeze(-1)


@torch.no_grad()
def expected_log_odds_change(model: nn.Module, x: Tensor, eta: Tensor,
                             bounds: tuple[float, float] | None = (0.0, 1.0)) -> Tensor:
    """gbar_{y,z}(x) = mean over the draws eta_1..n of f_{y,z}(clip(x + eta_i)) - f_{y,z}(x).

    x: (B, *), eta: (B, n, *) -> (B, K, K), entry [b, y, z]. The mean is taken over the logits first, since
    g is linear in them: gbar_{y,z} = d_z - d_y with d = mean_i f(x + eta_i) - f(x).
    """
    b, n = eta.shape[:2]
    noisy = x.unsqueeze(1) + eta                                          # (B, n, *)
    if bounds is not None:
        noisy = noisy.clamp(*bounds)
    clean = model(x)                                                      # (B, K)
    shifted = model(noisy.flatten(0, 1)).view(b, n, -1)                   # (B, n, K)
    return pairwise_log_odds(shifted.mean(1) - clean)                     # (B, K, K)


@torch.no_grad()
def noise_statistic(model: nn.Module, x: Tensor, noise, samples: int, generator: torch.Generator | None = None,
                    bounds: tuple[float, float] | None = (0.0, 1.0), max_batch: int = 512) -> tuple[Tensor, Tensor]:
    """The logits f(x) (B, K) and gbar_{y,z}(x) for each kind of noise (B, S, K, K), from `samples` draws each.

    Images go through the model `max_batch` noisy copies at a time. The same `generator` state gives the same
    draws, so a statistic can be recomputed exactly.
    """
    noise = check_noise(noise)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    was_training = model.training
    model.eval()
    try:
        per_chunk = max(1, max_batch // samples)
        logits, stats = [], []
        for i in range(0, len(x), per_chunk):
            xb = x[i:i + per_chunk]
            logits.append(model(xb))
            stats.append(torch.stack([
                expected_log_odds_change(model, xb, draw_noise(kind, eps, (len(xb), samples, *xb.shape[1:]),
                                                               generator, xb.dtype).to(xb.device), bounds)
                for kind, eps in noise], 1))                              # (b, S, K, K)
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(stats)
