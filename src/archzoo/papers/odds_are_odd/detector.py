"""The statistical test: z-scores of the noise-induced log-odds, detection and corrected classification
(Roth, Kilcher & Hofmann 2019, arXiv:1902.04818, Sec. 3.3-3.5).

Calibration (Sec. 3.3): on clean training inputs x of class y that the model classifies correctly, the mean
mu_{y,z} and standard deviation sigma_{y,z} of gbar_{y,z}(x) for every other class z (per kind of noise). An
input x with prediction y = argmax f(x) then gets, for every z != y, the z-score

    zbar_{y,z}(x) = (gbar_{y,z}(x) - mu_{y,z}) / sigma_{y,z}

(averaged over the kinds of noise, as in the authors' code). Detection (Sec. 3.4): x is flagged as adversarial
when the log-odds of some pair move more than that pair's threshold, gbar_{y,z}(x) > mu_{y,z} + tau sigma_{y,z},
that is when

    max_{z != y} zbar_{y,z}(x) > tau,

one cut-off tau in units of each pair's own spread, chosen as the (1 - fpr) quantile of this score on clean
held-out inputs, so that a set fraction fpr of them (the false-positive rate) is flagged. (A quantile per pair
needs hundreds of clean inputs per class pair before it resolves the 0.5% that each of the K - 1 = 9 pairs may
flag; the z-scores make one cut-off serve every pair, as the authors' code does.) Correction (Sec. 3.5): a
flagged input is assigned the class whose z-score stands out, argmax_{z != y} zbar_{y,z}(x), the class the
noise pulls it back to; an input that is not flagged keeps its prediction.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...registry import register_layer
from .log_odds import check_noise, noise_statistic


def standardize(stat: Tensor, pred: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """(gbar_{y,z} - mu_{y,z}) / sigma_{y,z} at y = pred, per kind of noise: stat (B, S, K, K), pred (B,),
    mu and sigma (S, K, K) -> (B, S, K); the entry z = y is -inf (a class is not tested against itself)."""
    rows = torch.arange(len(pred), device=pred.device)
    g = stat[rows, :, pred]                                               # (B, S, K): gbar_{pred, z}
    z = (g - mu[:, pred].transpose(0, 1)) / sigma[:, pred].transpose(0, 1)
    return z.masked_fill(nn.functional.one_hot(pred, stat.shape[-1]).bool().unsqueeze(1), float("-inf"))


def detection_score(z: Tensor) -> Tensor:
    """The test statistic max_{z != y} zbar_{y,z}(x): (B, K) -> (B,)."""
    return z.max(1).values


def fit_threshold(z_clean: Tensor, fpr: float) -> float:
    """The cut-off tau on the z-scores that flags a fraction `fpr` of these clean inputs: the (1 - fpr) quantile
    of their detection scores."""
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    return float(torch.quantile(detection_score(z_clean).double(), 1.0 - fpr))


def correct(pred: Tensor, z: Tensor, detected: Tensor) -> Tensor:
    """The corrected prediction: argmax_{z != y} zbar_{y,z} where detected, the model's prediction elsewhere."""
    return torch.where(detected, z.argmax(1), pred)


@register_layer(paper="odds_are_odd")
class OddsAreOdd(nn.Module):
    """The detector around a classifier `model`: `calibrate` on clean training data, `fit_thresholds` on clean
    held-out data for a false-positive rate, then `forward(x) -> (detected, corrected prediction)`.

    `noise`: (kind, eps) pairs (kinds "normal", "uniform", "sign"), each drawn `samples` times per input;
    `bounds`: the valid pixel range the noisy inputs are clipped to.
    """

    def __init__(self, model: nn.Module, noise, samples: int = 64, bounds: tuple[float, float] | None = (0.0, 1.0),
                 max_batch: int = 512):
        super().__init__()
        self.model, self.noise, self.samples = model, check_noise(noise), samples
        self.bounds, self.max_batch = bounds, max_batch
        self.register_buffer("mu", torch.empty(0))                        # (S, K, K) once calibrated
        self.register_buffer("sigma", torch.empty(0))
        self.register_buffer("tau", torch.tensor(float("nan")))           # the cut-off, once fitted

    def statistic(self, x: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Logits (B, K) and gbar (B, S, K, K); `seed` fixes the noise draws."""
        g = torch.Generator().manual_seed(seed)
        return noise_statistic(self.model, x, self.noise, self.samples, g, self.bounds, self.max_batch)

    def calibrate(self, x: Tensor, y: Tensor, seed: int = 0) -> OddsAreOdd:
        """mu_{y,z} and sigma_{y,z} (population standard deviation) over the correctly classified inputs of each
        class y; a class with fewer than two such inputs keeps mu = 0, sigma = 1."""
        logits, stat = self.statistic(x, seed)
        pred = logits.argmax(1)
        s, k = stat.shape[1], stat.shape[-1]
        mu, sigma = torch.zeros(s, k, k, dtype=stat.dtype), torch.ones(s, k, k, dtype=stat.dtype)
        for c in range(k):
            rows = stat[(pred == c) & (y.to(pred.device) == c), :, c]    # (n_c, S, K): gbar_{c, z}
            if len(rows) >= 2:
                mu[:, c] = rows.mean(0)
                sigma[:, c] = rows.std(0, unbiased=False).clamp_min(1e-12)
        self.mu, self.sigma = mu.to(stat.device), sigma.to(stat.device)
        return self

    def z_scores(self, x: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
        """(prediction y (B,), zbar_{y,z} averaged over the kinds of noise (B, K), -inf at z = y)."""
        if not self.mu.numel():
            raise RuntimeError("OddsAreOdd: call calibrate(x_train, y_train) before computing z-scores")
        logits, stat = self.statistic(x, seed)
        pred = logits.argmax(1)
        return pred, standardize(stat, pred, self.mu, self.sigma).mean(1)

    def fit_threshold(self, x: Tensor, fpr: float, seed: int = 0) -> float:
        """The cut-off tau for a false-positive rate `fpr` on the clean held-out inputs `x`."""
        self.tau = torch.tensor(fit_threshold(self.z_scores(x, seed)[1], fpr))
        return float(self.tau)

    def forward(self, x: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
        """(detected (B,) bool, corrected prediction (B,))."""
        if self.tau.isnan():
            raise RuntimeError("OddsAreOdd: call fit_threshold(x_clean, fpr) before detecting")
        pred, z = self.z_scores(x, seed)
        detected = detection_score(z) > self.tau
        return detected, correct(pred, z, detected)
