r"""Alignment: the angle between the DFA update and the true gradient, per layer (Nøkland 2016, Sec. 3-4).

DFA learns because the forward weights come to *align* with the fixed feedback: once the layers above map
B_i e back onto the direction of the error, the DFA update -(B_i e \odot f'(a_i)) h_{i-1}^T points within
90 degrees of the backpropagated one, so it descends the loss. `alignment_angles` measures that angle per layer
on one batch; `AlignmentMonitor` records it during training.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...engine.hooks import Hook
from ...engine.trainer import cross_entropy_loss
from .feedback import DirectFeedbackAlignment


def angle_degrees(a: torch.Tensor, b: torch.Tensor) -> float:
    """The angle between two tensors taken as flat vectors, in degrees (90 when either is zero)."""
    a, b = a.flatten().double(), b.flatten().double()
    norm = float(a.norm() * b.norm())
    if norm == 0.0:
        return 90.0
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b) / norm))))


def alignment_angles(model: nn.Module, dfa: DirectFeedbackAlignment, batch, groups: dict[str, list[nn.Parameter]],
                     loss_fn=cross_entropy_loss) -> dict[str, float]:
    """{layer: angle in degrees between the DFA gradient and the backpropagated gradient of its parameters}
    on one `batch` (the parameters of each layer taken together as one vector)."""
    params = [p for ps in groups.values() for p in ps]
    g_dfa = torch.autograd.grad(loss_fn(model, batch), params, materialize_grads=True)
    with dfa.backprop():
        g_bp = torch.autograd.grad(loss_fn(model, batch), params, materialize_grads=True)
    angles, i = {}, 0
    for name, ps in groups.items():
        flat_dfa, flat_bp = (torch.cat([g.flatten() for g in gs[i:i + len(ps)]]) for gs in (g_dfa, g_bp))
        angles[name] = angle_degrees(flat_dfa, flat_bp)
        i += len(ps)
    return angles


class AlignmentMonitor(Hook):
    """Record `alignment_angles` on a fixed probe `batch` before the first step and after every `every` steps
    (`history`: one `{"step": t, layer: degrees, ...}` per measurement, kept in checkpoints)."""

    def __init__(self, dfa: DirectFeedbackAlignment, groups: dict[str, list[nn.Parameter]], batch, every: int,
                 model: str = "model", loss_fn=cross_entropy_loss):
        if every < 1:
            raise ValueError(f"AlignmentMonitor: every must be >= 1, got {every}")
        self.dfa, self.groups, self.batch, self.every = dfa, groups, batch, every
        self.model, self.loss_fn = model, loss_fn
        self.history: list[dict] = []

    def measure(self, trainer) -> None:
        angles = alignment_angles(trainer.models[self.model], self.dfa, self.batch, self.groups, self.loss_fn)
        self.history.append({"step": trainer.step, **angles})

    def on_fit_start(self, trainer) -> None:
        if trainer.step == 0 and not self.history:
            self.measure(trainer)

    def on_step_end(self, trainer) -> None:
        if trainer.step % self.every == 0:
            self.measure(trainer)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
