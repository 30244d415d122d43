"""Hooks: what a paper adds to the Trainer's loop instead of writing its own.

    class ReapplyMask(Hook):                      # Lottery Ticket: pruned weights stay zero
        def after_step(self, trainer, optimizer):
            for p, m in zip(params, masks):
                p.data.mul_(m)

    Trainer(..., hooks=[ReapplyMask(), EMA("model", decay=0.999), Every(100, save_figure)])

Each `trainer.backward(loss, optimizer)` call runs `on_loss` (the loss, a float averaged over
processes, before backward), then `after_backward` (gradients ready and unscaled: clip, mask,
measure), then `after_step` (the optimizer has updated its parameters). After each whole training
step come `on_step_end` (`trainer.step` steps are done), and after each evaluation `on_evaluate`.
A hook's `state_dict()` (tensors and JSON values) is checkpointed with the run and restored by
`load_state_dict` on resume. The NaN guard and gradient clipping are hooks too.
"""

from __future__ import annotations

import copy
import math

import torch


class Hook:
    """Override what you need; every method here does nothing."""

    def on_fit_start(self, trainer) -> None:
        """Before the first step (and before a resumed run's state is loaded into the hook)."""

    def on_loss(self, trainer, optimizer: str, loss: float) -> None:
        """`loss` (mean over processes) is about to be backpropagated for `optimizer`."""

    def after_backward(self, trainer, optimizer: str) -> None:
        """The gradients of `optimizer`'s parameters are ready (unscaled under fp16)."""

    def after_step(self, trainer, optimizer: str) -> None:
        """`optimizer` has updated its parameters."""

    def on_step_end(self, trainer) -> None:
        """A training step is complete; `trainer.step` steps are done."""

    def on_evaluate(self, trainer, metrics: dict) -> None:
        """An evaluation after `trainer.step` steps returned `metrics`."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class NanGuard(Hook):
    """Stop training with a FloatingPointError naming the step when a loss is NaN or infinite, before it can
    reach the weights (built in: always the Trainer's first hook)."""

    def on_loss(self, trainer, optimizer: str, loss: float) -> None:
        if not math.isfinite(loss):
            which = f" (optimizer {optimizer!r})" if len(trainer.optimizers) > 1 else ""
            raise FloatingPointError(f"loss is {loss} at step {trainer.step + 1} of {trainer.steps}{which}; "
                                     "try a lower lr or a grad_clip")


def parameters_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every parameter an optimizer updates."""
    return [p for group in optimizer.param_groups for p in group["params"]]


class GradNorm(Hook):
    """Log the global L2 norm of the gradients before any clipping (`grad_norm`, one per optimizer), and clip
    it to `max_norm` when given (built in as `Trainer(grad_clip=...)`)."""

    def __init__(self, max_norm: float | None = None):
        if max_norm is not None and max_norm <= 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm = max_norm

    def after_backward(self, trainer, optimizer: str) -> None:
        params = parameters_of(trainer.optimizers[optimizer])
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        if self.max_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(params, self.max_norm, norm)
        trainer.log({"grad_norm": float(norm)}, optimizer=optimizer)


class Every(Hook):
    """Call `fn(trainer)` after every `n`-th training step (custom logging, figures, rewinding)."""

    def __init__(self, n: int, fn):
        if n < 1:
            raise ValueError(f"Every: n must be >= 1, got {n}")
        self.n, self.fn = n, fn

    def on_step_end(self, trainer) -> None:
        if trainer.step % self.n == 0:
            self.fn(trainer)


class EMA(Hook):
    r"""An exponential moving average of a model's weights, updated after every training step:

        \bar\theta \leftarrow d \bar\theta + (1 - d) \theta

    over every floating-point entry of the state dict (BN statistics included; integer buffers are copied).
    `ema.module` is the averaged copy (eval mode, no gradients) to evaluate or sample with; it is
    checkpointed with the run, so a resumed run continues the same average.
    """

    def __init__(self, model: str = "model", decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.model, self.decay = model, decay
        self.module: torch.nn.Module | None = None
        self.updates = 0

    def on_fit_start(self, trainer) -> None:
        if self.model not in trainer.models:
            raise ValueError(f"EMA: no model named {self.model!r}; the trainer has {', '.join(trainer.models)}")
        if self.module is None:
            self.module = copy.deepcopy(trainer.models[self.model]).eval().requires_grad_(False)

    @torch.no_grad()
    def on_step_end(self, trainer) -> None:
        current = trainer.models[self.model].state_dict()
        for key, avg in self.module.state_dict().items():
            if avg.is_floating_point():
                avg.lerp_(current[key], 1.0 - self.decay)        # d avg + (1 - d) theta
            else:
                avg.copy_(current[key])
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        self.module.load_state_dict(state["weights"])
