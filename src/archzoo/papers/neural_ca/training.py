r"""Training the CA through the Trainer (Growing Neural Cellular Automata, Distill 2020, "Experiment 1-3").

One training step (`GrowthStep`): take a batch of starting states, run the CA for a random number of steps
(64 to 96 in the article), and minimise the per-cell L2 loss between the RGBA channels and the target; the
gradient flows back through every CA step. The batches come from one of three regimes:

- "growing" (Experiment 1, "Learning to Grow"): every sample starts from the seed;
- "persistent" (Experiment 2, "What persists, exists"): a sample pool (1,024 states, all seeds at first);
  a batch of 8 is drawn, sorted by loss, the worst sample is replaced by the seed, and the grown batch is put
  back into the pool, so that the CA also learns to keep a grown pattern from drifting;
- "regenerating" (Experiment 3, "Learning to regenerate"): the pool, and the 3 lowest-loss samples of the batch
  are damaged first (a random disc of cells erased, `target.circle_masks`).

The pool lives in the step (`state_dict` / `load_state_dict`), so it is checkpointed and resumed with the run.
The article normalises each parameter's gradient to unit L2 norm before Adam ("per-variable L2 normalisation";
its code: `g / (tf.norm(g) + 1e-8)`): the hook `NormalizeGradients`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...engine.hooks import Hook, parameters_of
from ...engine.schedules import step_decay
from ...engine.trainer import Trainer
from .ca import NeuralCA
from .target import circle_masks, rgba_loss, seed_state

REGIMES = ("growing", "persistent", "regenerating")


class NormalizeGradients(Hook):
    """Divide every parameter's gradient by its own L2 norm (+ 1e-8) after backward, before the optimizer."""

    def after_backward(self, trainer, optimizer: str) -> None:
        for p in parameters_of(trainer.optimizers[optimizer]):
            if p.grad is not None:
                p.grad.div_(p.grad.norm() + 1e-8)


class GrowthStep:
    """The Trainer step of one regime (see the module's docstring): `target` (4, H, W) on the whole grid,
    `batch_size` samples per step, `min_steps`..`max_steps` CA steps per rollout, a pool of `pool_size` states
    and `damage` damaged samples per batch where the regime uses them."""

    def __init__(self, target: Tensor, *, regime: str = "regenerating", batch_size: int = 8, pool_size: int = 1024,
                 damage: int = 3, min_steps: int = 64, max_steps: int = 96, channels: int = 16):
        if regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
        if not 1 <= min_steps <= max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
        if regime != "growing" and not (batch_size <= pool_size and 0 <= damage < batch_size):
            raise ValueError(f"need batch_size <= pool_size and 0 <= damage < batch_size, got {batch_size}, "
                             f"{pool_size}, {damage}")
        self.target, self.regime, self.batch_size = target, regime, batch_size
        self.min_steps, self.max_steps = min_steps, max_steps
        self.damage = damage if regime == "regenerating" else 0
        _, height, width = target.shape
        self.seed = seed_state(height, width, channels)                       # (1, C, H, W)
        self.pool = None if regime == "growing" else self.seed.repeat(pool_size, 1, 1, 1)   # (N, C, H, W)

    def batch(self) -> tuple[Tensor | None, Tensor]:
        """The pool indices (None when growing) and the starting states (B, C, H, W) of one step."""
        if self.pool is None:
            return None, self.seed.repeat(self.batch_size, 1, 1, 1)
        idx = torch.randperm(len(self.pool))[:self.batch_size]
        with torch.no_grad():
            idx = idx[rgba_loss(self.pool[idx], self.target).argsort(descending=True)]    # worst first
        x0 = self.pool[idx].clone()
        x0[:1] = self.seed                                                    # the worst one starts again
        if self.damage:                                                       # the best ones are damaged
            _, _, height, width = x0.shape
            x0[-self.damage:] *= ~circle_masks(self.damage, height, width)
        return idx, x0

    def __call__(self, trainer: Trainer, batches: dict) -> dict:
        ca = trainer.nets["model"]
        idx, x0 = self.batch()
        device = next(ca.parameters()).device
        steps = int(torch.randint(self.min_steps, self.max_steps + 1, ()))
        x = ca.grow(x0.to(device), steps)                                     # (B, C, H, W)
        loss = trainer.backward(rgba_loss(x, self.target.to(device)).mean())
        if idx is not None:
            self.pool[idx] = x.detach().cpu()
        return {"loss": loss, "ca_steps": steps}

    def state_dict(self) -> dict:
        return {} if self.pool is None else {"pool": self.pool}

    def load_state_dict(self, state: dict) -> None:
        if self.pool is not None:
            self.pool = state["pool"].clone()


@dataclass
class Training:
    losses: list[float]            # the batch loss of every training step


def train_ca(ca: NeuralCA, target: Tensor, *, steps: int, regime: str = "regenerating", lr: float = 2e-3,
             decay_at: float = 0.25, seed: int = 0, device="cpu", progress: bool = False, desc: str | None = None,
             checkpoint_dir=None, checkpoint_every: int = 0, resume: bool = False, **step_kw) -> Training:
    """Train `ca` to grow `target` (4, H, W) for `steps` steps of `regime`: Adam at `lr`, x0.1 after `decay_at`
    of the steps (the article: 2e-3, x0.1 after 2,000 of 8,000), normalised gradients. `step_kw` go to
    `GrowthStep` (batch_size, pool_size, damage, min_steps, max_steps)."""
    optimizer = torch.optim.Adam(ca.parameters(), lr=lr)
    trainer = Trainer(ca, optimizer, step_decay(optimizer, steps=steps, at=(decay_at,)), steps=steps, data=None,
                      step=GrowthStep(target, regime=regime, channels=ca.channels, **step_kw),
                      hooks=[NormalizeGradients()], seed=seed, device=device, progress=progress, desc=desc,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
    result = trainer.fit(resume=resume)
    return Training(losses=[h["loss"] for h in result.history])
