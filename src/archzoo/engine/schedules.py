"""Learning-rate schedules as standard `torch.optim.lr_scheduler.LambdaLR` objects, so their state checkpoints.

    scheduler = warmup_schedule(optimizer, steps=1000, warmup_steps=50, schedule="cosine")
    scheduler = step_decay(optimizer, steps=500, at=(0.3, 0.6, 0.9))      # BiT's HyperRule: x0.1 at 30/60/90%

The scheduler is stepped once per training step; the factor for the update at step t (0-based) multiplies
each parameter group's initial learning rate.
"""

from __future__ import annotations

import math
from functools import partial

import torch

SCHEDULES = ("cosine", "linear", "constant")


def lr_factor(step: int, *, steps: int, warmup_steps: int = 0, schedule: str = "cosine",
              min_ratio: float = 0.0) -> float:
    """The multiplier of the base learning rate for the update at `step` (0-based).

    Linear warm-up (step+1)/warmup_steps, then over the remaining steps
    `cosine`: min + (1-min)(1 + cos(pi p))/2, `linear`: min + (1-min)(1 - p), or `constant`: 1,
    where p = (step - warmup_steps) / (steps - warmup_steps) goes from 0 towards 1.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    p = (step - warmup_steps) / max(1, steps - warmup_steps)
    decay = 0.5 * (1.0 + math.cos(math.pi * p)) if schedule == "cosine" else 1.0 - p
    return min_ratio + (1.0 - min_ratio) * decay


def step_decay_factor(step: int, *, steps: int, at=(0.3, 0.6, 0.9), factor: float = 0.1,
                      warmup_steps: int = 0) -> float:
    """The multiplier for the update at `step` (0-based) of a piecewise-constant schedule: after an
    optional linear warm-up, `factor` once for every boundary round(f * steps), f in `at`, already reached."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return factor ** sum(step >= round(f * steps) for f in at)


def warmup_schedule(optimizer: torch.optim.Optimizer, *, steps: int, warmup_steps: int = 0,
                    schedule: str = "cosine", min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_steps`, then `schedule` ("cosine" or "linear" down to `min_ratio`
    of the base rate, or "constant") over the rest of `steps` (see `lr_factor`)."""
    fn = partial(lr_factor, steps=steps, warmup_steps=warmup_steps, schedule=schedule, min_ratio=min_ratio)
    fn(0)                                                   # validates the schedule before anything runs
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def step_decay(optimizer: torch.optim.Optimizer, *, steps: int, at=(0.3, 0.6, 0.9), factor: float = 0.1,
               warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Multiply the learning rate by `factor` at each fraction `at` of `steps` (BiT's HyperRule, Kolesnikov
    et al. 2019, Sec. 3.3: x0.1 at 30%, 60% and 90%), after an optional linear warm-up."""
    if not all(0.0 <= f <= 1.0 for f in at) or list(at) != sorted(at):
        raise ValueError(f"step_decay: `at` must be increasing fractions in [0, 1], got {tuple(at)}")
    if factor <= 0:
        raise ValueError(f"step_decay: factor must be > 0, got {factor}")
    fn = partial(step_decay_factor, steps=steps, at=tuple(at), factor=factor, warmup_steps=warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
