r"""Direct Feedback Alignment (Nøkland 2016, arXiv:1609.01596; Launay et al. 2020, arXiv:2006.12878, Sec. 2).

A layer-wise network a_i = W_i h_{i-1} + b_i, h_i = f(a_i) (Eq. 1) learns by backpropagation from

    \delta a_i = (W_{i+1}^T \delta a_{i+1}) \odot f'(a_i),        \delta W_i = -\delta a_i h_{i-1}^T     (Eq. 2)

DFA replaces the transported error by a fixed random projection of the *global* error e = dL/d\hat y at the
output (for softmax + cross-entropy, e = \hat y - y):

    \delta a_i = (B_i e) \odot f'(a_i),                           \delta W_i = -\delta a_i h_{i-1}^T     (Eq. 3)

with one fixed random feedback matrix B_i per hidden layer; the output layer keeps its true gradient.

`DirectFeedbackAlignment` turns any model into a DFA-trained one through forward hooks, without touching its
code. The output h_i of each feedback point (a hidden layer, or a whole Transformer block in Sec. 3.4's
"macro" setting) goes on *detached*, so no gradient can flow from the layers above into it; the output
module's logits pass through `_DirectFeedback`, an autograd function whose backward receives e and hands each
h_i the gradient B_i e. Autograd then applies f'(a_i) and h_{i-1}^T inside the layer itself (Eq. 3), and
nothing reaches the layer below, whose input was detached too. It is also a Trainer hook: the feedback
matrices are its state, checkpointed with the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ...engine.hooks import Hook


class _DirectFeedback(torch.autograd.Function):
    """Identity on the logits; backward sends the global error e to the logits' own graph (the output layer's
    true gradient) and B_i e to every recorded hidden output h_i (Eq. 3)."""

    @staticmethod
    def forward(ctx, logits: Tensor, dfa: DirectFeedbackAlignment, *hidden: Tensor) -> Tensor:
        ctx.dfa, ctx.points = dfa, dfa._recorded_points
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx, e: Tensor):                               # e = dL/dlogits, (B, ..., C)
        return (e, None, *(ctx.dfa.feedback_signal(i, e) for i in ctx.points))


class DirectFeedbackAlignment(Hook):
    r"""DFA training of `model` (Launay et al. 2020, Sec. 2, Eq. 3): a fixed random projection B_i e of the
    output error replaces backpropagation into every module of `points`.

    - `points`: the modules whose outputs h_i (B, ..., d_i) receive feedback, in forward order (the hidden
      layers' activations of an MLP; the embedding and every block of a Transformer). Each one's output goes on
      detached, so the modules from one point to the next learn only from B_i e.
    - `output`: the module that computes the logits (B, ..., C) from the last point; it and everything between
      the last point and it (a final norm) get their true gradient.
    - B_i (d_i, C) ~ N(0, 1/C), drawn once from `seed` when h_i is first seen and never trained: buffers of this
      hook, checkpointed by the Trainer (`state_dict`), so a resumed run continues with the same matrices.
    - `with dfa.backprop():` turns the hooks off (plain backpropagation through the same model): the reference
      gradient of `alignment`. Under `torch.no_grad()` (evaluation) the hooks do nothing.
    - `remove()` takes the hooks off the model for good.
    """

    def __init__(self, points: Sequence[nn.Module], output: nn.Module, seed: int = 0):
        points = list(points)
        if not points:
            raise ValueError("DirectFeedbackAlignment needs at least one feedback point (a hidden layer)")
        if any(output is p for p in points):
            raise ValueError("the output module cannot also be a feedback point: it gets its true gradient")
        self.seed, self.enabled = seed, True
        self.feedback: dict[int, Tensor] = {}                   # i -> B_i, (d_i, C)
        self._hidden: dict[int, Tensor] = {}                    # i -> h_i of the forward in progress (not detached)
        self._recorded_points: list[int] = []
        self._handles = [p.register_forward_hook(self._point_hook(i)) for i, p in enumerate(points)]
        self._handles.append(output.register_forward_hook(self._output_hook))

    # ------------------------------------------------------------------------- the forward hooks

    def _active(self) -> bool:
        return self.enabled and torch.is_grad_enabled()

    def _point_hook(self, i: int):
        def hook(module: nn.Module, args, h: Tensor) -> Tensor | None:
            if not self._active():
                return None
            if not isinstance(h, Tensor):
                raise TypeError(f"DFA feedback point {i} ({type(module).__name__}) must return one tensor, "
                                f"got {type(h).__name__}")
            if i in self._hidden:
                raise ValueError(f"DFA feedback point {i} ({type(module).__name__}) ran twice before the output: "
                                 "every point must run once per forward")
            self._hidden[i] = h
            return h.detach()                                   # no gradient from above reaches h_i

        return hook

    def _output_hook(self, module: nn.Module, args, logits: Tensor) -> Tensor | None:
        if not self._active():
            self._hidden.clear()
            return None
        hidden, self._hidden = self._hidden, {}
        self._recorded_points = sorted(hidden)
        for i in self._recorded_points:
            h = hidden[i]
            if h.shape[:-1] != logits.shape[:-1]:
                raise ValueError(f"DFA feedback point {i}: its output {tuple(h.shape)} and the logits "
                                 f"{tuple(logits.shape)} must share every dimension but the last")
            self._feedback_matrix(i, h.shape[-1], logits.shape[-1])
        return _DirectFeedback.apply(logits, self, *(hidden[i] for i in self._recorded_points))

    # ------------------------------------------------------------------------- the feedback

    def _feedback_matrix(self, i: int, width: int, classes: int) -> Tensor:
        """B_i (width, classes) ~ N(0, 1/classes), drawn from (seed, i) the first time point i is seen."""
        if i not in self.feedback:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            self.feedback[i] = torch.randn(width, classes, generator=g) / classes ** 0.5
        b = self.feedback[i]
        if b.shape != (width, classes):
            raise ValueError(f"DFA feedback matrix {i} is {tuple(b.shape)}, but point {i} outputs {width} features "
                             f"and the model {classes} logits: expected ({width}, {classes})")
        return b

    def feedback_signal(self, i: int, e: Tensor) -> Tensor:
        """B_i e for every position: (B, ..., C) -> (B, ..., d_i), the gradient that reaches h_i (Eq. 3)."""
        b = self.feedback[i].to(e.device, e.dtype)
        return e @ b.T                                          # (B, ..., d_i)

    @contextmanager
    def backprop(self):
        """Plain backpropagation through the same model inside the block (the hooks are off)."""
        enabled, self.enabled = self.enabled, False
        try:
            yield self
        finally:
            self.enabled = enabled

    def remove(self) -> None:
        """Take the hooks off the model: it trains by backpropagation again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        return {"seed": self.seed, "feedback": {str(i): b for i, b in self.feedback.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state["seed"]
        self.feedback = {int(i): b.clone() for i, b in state["feedback"].items()}
