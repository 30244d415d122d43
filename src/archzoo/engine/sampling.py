"""The sampling protocol of generative models, and the one way the report and the claims draw samples.

A generative model (GAN generator, VAE, flow, diffusion model, autoregressive model) has

    def sample(self, n: int, generator: torch.Generator | None = None, **kw) -> Tensor   # (n, ...)

which draws `n` samples, taking every random number from `generator` (so one seed gives one set of samples),
with paper-specific options in `kw` (temperature, number of diffusion steps, a class label, ...).

    images = draw_samples(model, 64, seed=0)          # eval mode, no grad, seeded; the model's modes restored
"""

from __future__ import annotations

from itertools import chain
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class GenerativeModel(Protocol):
    """Anything with `sample(n, generator=None, **kw) -> Tensor` of n samples along dim 0 (see the module doc)."""

    def sample(self, n: int, generator: torch.Generator | None = None, **kw) -> Tensor: ...


def draw_samples(model: GenerativeModel, n: int, seed: int, **kw) -> Tensor:
    """`model.sample(n, generator, **kw)` with a generator seeded by `seed` on the model's device, in eval mode and
    without gradients; every submodule's train/eval mode is restored afterwards, even when sampling fails."""
    if not isinstance(model, GenerativeModel):
        raise TypeError(f"{type(model).__name__} has no sample(n, generator=None, **kw) method")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    modules = list(model.modules()) if isinstance(model, nn.Module) else []
    modes = [m.training for m in modules]                                       # submodules may differ (frozen BN)
    tensor = next(chain(model.parameters(), model.buffers()), None) if modules else None
    generator = torch.Generator(tensor.device if tensor is not None else "cpu").manual_seed(seed)
    try:
        if modules:
            model.eval()
        with torch.no_grad():
            samples = model.sample(n, generator=generator, **kw)
    finally:
        for m, training in zip(modules, modes):
            m.training = training
    if not isinstance(samples, Tensor) or samples.dim() == 0 or samples.shape[0] != n:
        got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
        raise ValueError(f"{type(model).__name__}.sample({n}) must return a tensor of shape ({n}, ...), got {got}")
    return samples
