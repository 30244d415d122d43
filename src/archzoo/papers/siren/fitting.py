r"""Fitting a coordinate network to one signal through the Trainer (Sitzmann et al. 2020, Sec. 3.1, 4.1).

Every problem of the paper is a loss on \Phi and its derivatives at the coordinates (Eq. 3-4). Three of them:

    values:     L = mean |\Phi(x) - f(x)|^2                 (image and audio fitting, Fig. 1, Fig. 4)
    gradients:  L = mean |\nabla_x \Phi(x) - \nabla f(x)|^2   (Poisson reconstruction from gradients, Fig. 3)
    laplacian:  L = mean |\Delta \Phi(x) - \Delta f(x)|^2     (... from the Laplacian, Fig. 3)

A signal is one batch: every step sees the whole coordinate grid (the Trainer runs with no data stream), Adam
updates the weights. \Phi fitted to derivatives is defined up to a constant (and, for the Laplacian, a harmonic
function), so its PSNR is measured after shifting it to the signal's mean, as the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...engine.trainer import Trainer
from .derivatives import gradient, laplacian
from .signals import psnr

SUPERVISION = ("values", "gradients", "laplacian")


@dataclass
class Fit:
    psnr: float                     # of the final \Phi against the signal's values (mean-matched unless values)
    curve: list[tuple[int, float]]  # (step, PSNR) at each evaluation
    losses: list[float]             # the training loss of every step
    output: Tensor                  # the final \Phi at the coordinates (mean-matched), (N, C)


def fitting_step(coords: Tensor, target: Tensor, supervise: str = "values"):
    """The Trainer step of one signal: `supervise` the values, gradients or Laplacian of \\Phi at `coords` (N, D)
    with `target` ((N, C) values, (N, D) gradient or (N, 1) Laplacian)."""
    if supervise not in SUPERVISION:
        raise ValueError(f"supervise must be one of {SUPERVISION}, got {supervise!r}")
    x = coords.detach().clone().requires_grad_(supervise != "values")

    def step(trainer: Trainer, batches: dict) -> dict:
        phi = trainer.nets["model"](x)                                          # (N, C)
        if supervise == "gradients":
            phi = gradient(phi, x)                                              # (N, D)
        elif supervise == "laplacian":
            phi = laplacian(phi, x)                                             # (N, 1)
        return {"loss": trainer.backward(F.mse_loss(phi, target))}

    return step


def reconstruction(model: nn.Module, coords: Tensor, values: Tensor, supervise: str = "values") -> Tensor:
    """\\Phi at `coords`; shifted to the mean of `values` when it was fitted to derivatives (defined up to a
    constant)."""
    with torch.no_grad():
        phi = model(coords)
    return phi if supervise == "values" else phi - phi.mean() + values.mean()


def fit(model: nn.Module, coords: Tensor, values: Tensor, *, steps: int, lr: float, supervise: str = "values",
        target: Tensor | None = None, eval_every: int = 0, device="cpu", seed: int = 0, progress: bool = False,
        desc: str | None = None) -> Fit:
    """Fit `model` to a signal (`values` (N, C) at `coords` (N, D)) for `steps` Adam steps of rate `lr`, on its
    values or on `target`, the signal's gradient or Laplacian (`supervise`); the PSNR against `values` every
    `eval_every` steps and at the end."""
    device = torch.device(device)
    coords, values = coords.to(device), values.to(device)
    target = values if supervise == "values" else target
    if target is None:
        raise ValueError(f"supervise={supervise!r} needs the target {supervise} (target=...)")

    def evaluate(trainer: Trainer) -> dict:
        return {"psnr": psnr(reconstruction(trainer.models["model"], coords, values, supervise), values)}

    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=lr), steps=steps, data=None,
                      step=fitting_step(coords, target.to(device), supervise), evaluate=evaluate,
                      eval_every=eval_every, seed=seed, device=device, progress=progress, desc=desc)
    result = trainer.fit()
    return Fit(psnr=result.evaluations[-1]["psnr"], curve=[(e["step"], e["psnr"]) for e in result.evaluations],
               losses=[h["loss"] for h in result.history],
               output=reconstruction(model, coords, values, supervise).cpu())
