r"""Iterative magnitude pruning with rewinding, as a hook of the Trainer (Frankle & Carbin 2018, Sec. 2; rewinding
to iteration k: Frankle, Dziugaite, Roy & Carbin 2019, arXiv:1903.01611).

Sec. 2, "identifying winning tickets", repeated over n rounds (iterative pruning, Sec. 2 and 3):

    1. Randomly initialize a neural network f(x; \theta_0) (where \theta_0 ~ D_\theta).
    2. Train the network for j iterations, arriving at parameters \theta_j.
    3. Prune p% of the parameters in \theta_j, creating a mask m.
    4. Reset the remaining parameters to their values in \theta_0, creating the winning ticket f(x; m \odot \theta_0).

With late rewinding (Frankle et al. 2019) step 4 resets to \theta_k, the weights after k iterations of the first
training, and every later round trains from iteration k to j again. One Trainer run does it all: the hook snapshots
\theta_k (k = 0: before the first step), and at the end of each training it records `on_round_end`'s metrics,
prunes (`pruning.magnitude_masks`), rewinds the weights (biases and buffers too) to the snapshot, clears the
optimizers' state and rewinds the learning-rate schedulers to iteration k, then training goes on. The Trainer's
`steps` must be `hook.total_steps`: j for the dense training, then j - k for each of the `rounds` pruned ones.

The masks are parametrizations of the model (see `pruning`), so they are checkpointed with its weights; the hook's
own state (the snapshot, the round, the log of each round) is checkpointed by the Trainer, so a resumed run goes on
bit for bit. After every optimizer step the hook multiplies the stored weights by their masks, so that momentum or
weight decay left from a denser round cannot move a pruned weight either.
"""

from __future__ import annotations

import torch

from ...engine.hooks import Hook
from .pruning import SCOPES, apply_masks, magnitude_masks, masks_of, originals_of, weights_left

MASK_SUFFIX = ".mask"       # the state-dict keys of the masks end so (`...parametrizations.weight.0.mask`)


class IterativeMagnitudePruning(Hook):
    """Train, prune `rates` of the remaining weights, rewind to iteration `rewind_step`: `rounds` times, then train the
    last ticket (Sec. 2). `rates`: `{layer: rate}` (`pruning.layer_rates`) with `scope="layer"`, or one rate (every
    prunable layer; the only form `scope="global"` takes). `masks`: the masks to start from (default: all ones).
    `on_round_end(trainer) -> {name: float}` is called after each training, before pruning (e.g. test accuracy);
    `log` holds one entry per training: round, step, `weights_left` and those metrics. `rounds=0` with `masks`
    trains one given subnetwork (the random re-initialisation control of Sec. 2-3)."""

    def __init__(self, model: str = "model", *, round_steps: int, rounds: int, rates=0.2, scope: str = "layer",
                 rewind_step: int = 0, masks: dict | None = None, on_round_end=None):
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if round_steps < 1 or rounds < 0:
            raise ValueError(f"round_steps must be >= 1 and rounds >= 0, got {round_steps} and {rounds}")
        if not 0 <= rewind_step < round_steps:
            raise ValueError(f"rewind_step must be in [0, round_steps={round_steps}), got {rewind_step}")
        self.model, self.round_steps, self.rounds, self.rates, self.scope = model, round_steps, rounds, rates, scope
        self.rewind_step, self.initial_masks, self.on_round_end = rewind_step, masks, on_round_end
        self.trained = 0                # trainings finished (round 0 is the dense one)
        self.log: list[dict] = []
        self.rewind_state: dict | None = None

    @property
    def total_steps(self) -> int:
        """The Trainer's `steps`: j, then j - k for each pruned round."""
        return self.round_end(self.rounds)

    def round_end(self, t: int) -> int:
        """The step at which training `t` (0: the dense one) ends."""
        return self.round_steps + t * (self.round_steps - self.rewind_step)

    # ------------------------------------------------------------------------- hook methods

    def on_fit_start(self, trainer) -> None:
        if self.model not in trainer.models:
            raise ValueError(f"IterativeMagnitudePruning: no model named {self.model!r}; the trainer has "
                             f"{', '.join(trainer.models)}")
        if trainer.steps != self.total_steps:
            raise ValueError(f"IterativeMagnitudePruning: the Trainer's steps must be hook.total_steps = "
                             f"{self.total_steps} ({self.rounds + 1} trainings), got {trainer.steps}")
        model = trainer.models[self.model]
        if not masks_of(model):         # a resumed run's masks come back with the model's weights after this
            names = self.rates if isinstance(self.rates, dict) else None
            apply_masks(model, self.initial_masks, names=names if self.initial_masks is None else None)
        if self.rewind_step == 0 and self.rewind_state is None:
            self.snapshot(trainer)

    def after_step(self, trainer, optimizer: str) -> None:
        model = trainer.models[self.model]
        with torch.no_grad():
            for name, mask in masks_of(model).items():
                originals_of(model)[name].mul_(mask)

    def on_step_end(self, trainer) -> None:
        if self.trained == 0 and self.rewind_step > 0 and trainer.step == self.rewind_step:
            self.snapshot(trainer)
        if trainer.step != self.round_end(self.trained):
            return
        model = trainer.models[self.model]
        with torch.no_grad():
            metrics = self.on_round_end(trainer) if self.on_round_end is not None else {}
        self.log.append({"round": self.trained, "step": trainer.step, "weights_left": weights_left(model),
                         **{k: float(v) for k, v in metrics.items()}})
        if self.trained < self.rounds:
            apply_masks(model, magnitude_masks(model, self.rates, self.scope))
            self.rewind(trainer)
        self.trained += 1

    # ------------------------------------------------------------------------- snapshot and rewind

    def snapshot(self, trainer) -> None:
        """Keep theta_k: the model's weights and buffers (not its masks) and the schedulers' states."""
        state = trainer.models[self.model].state_dict()
        self.rewind_state = {
            "weights": {k: v.detach().clone() for k, v in state.items() if not k.endswith(MASK_SUFFIX)},
            "schedulers": {name: s.state_dict() for name, s in trainer.schedulers.items()},
        }

    @torch.no_grad()
    def rewind(self, trainer) -> None:
        """Reset the remaining weights to theta_k (step 4), restart the optimizers' state and the schedules at k."""
        model = trainer.models[self.model]
        missing, unexpected = model.load_state_dict(self.rewind_state["weights"], strict=False)
        if unexpected or any(not k.endswith(MASK_SUFFIX) for k in missing):
            raise RuntimeError(f"rewinding: the snapshot does not fit the model (missing {missing}, "
                               f"unexpected {unexpected})")
        apply_masks(model, masks_of(model))                     # m * theta_k: pruned weights stay 0
        params = set(model.parameters())
        for opt in trainer.optimizers.values():
            for p in params:
                opt.state.pop(p, None)
        for name, scheduler in trainer.schedulers.items():
            scheduler.load_state_dict(self.rewind_state["schedulers"][name])
            for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr()):
                group["lr"] = lr

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        return {"trained": self.trained, "log": self.log, "rewind_state": self.rewind_state}

    def load_state_dict(self, state: dict) -> None:
        self.trained, self.log, self.rewind_state = state["trained"], state["log"], state["rewind_state"]
