r"""Adaptive Gradient Clipping, AGC (Brock, De, Smith & Simonyan 2021, arXiv:2102.06171, Sec. 4, Eq. 3).

Ordinary clipping (Eq. 2) caps the norm of the whole gradient at a fixed threshold, which has to be re-tuned for every
model, batch size and learning rate. AGC instead bounds the *ratio* of a gradient to the weight it updates, unit by
unit, because ||G|| / ||W|| says how much one step changes the weight. For the i-th unit (output channel / row) of
layer l,

    G_i <- \lambda \frac{\|W_i\|^\star}{\|G_i\|} G_i   if  \frac{\|G_i\|}{\|W_i\|^\star} > \lambda,  else G_i,   (Eq. 3)

with \|W_i\|^\star = \max(\|W_i\|_F, \epsilon), \epsilon = 10^{-3}, so that zero-initialised weights (the skip gains,
the biases) can still move. The paper clips every layer except the final linear classifier and uses lambda from
0.01 (large batches) to 0.16 (Fig. 2).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ...engine.hooks import Hook, parameters_of


def unitwise_norm(x: Tensor) -> Tensor:
    """||x_i||_F per unit, broadcastable against x.

    A unit is an output row: dim 0 of a Linear weight (out, in) or a conv kernel (out, in/groups, k, k), with the
    norm over every other dim. A vector or a scalar (a bias, a gain, a skip gain) is treated as one unit, as in the
    authors' release.
    """
    if x.dim() <= 1:
        return torch.linalg.vector_norm(x)                                    # one unit
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim())), keepdim=True)   # (out, 1, ..., 1)


@torch.no_grad()
def adaptive_grad_clip_(parameters: Tensor | Iterable[Tensor], clipping: float = 0.01, eps: float = 1e-3) -> None:
    """Clip `p.grad` in place, unit-wise, by Eq. 3 of arXiv:2102.06171, for every parameter p with a gradient.

    A unit whose gradient-to-weight norm ratio ||G_i|| / max(||W_i||, eps) exceeds `clipping` (lambda) is rescaled
    to exactly that ratio; every other unit is left untouched (bit for bit).
    """
    if clipping <= 0 or eps <= 0:
        raise ValueError(f"clipping and eps must be > 0, got {clipping} and {eps}")
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for p in params:
        if p.grad is None:
            continue
        max_norm = clipping * unitwise_norm(p).clamp(min=eps)                # lambda ||W_i||*
        grad_norm = unitwise_norm(p.grad)                                     # ||G_i||
        scale = torch.where(grad_norm > max_norm, max_norm / grad_norm, torch.ones_like(grad_norm))
        p.grad.mul_(scale)


class AdaptiveGradClip(Hook):
    """AGC (Eq. 3 of arXiv:2102.06171) as a Trainer hook: after every backward pass, before the optimizer steps, the
    gradients of the optimizer's parameters are clipped unit-wise by `adaptive_grad_clip_`, for any model and any
    optimizer:

        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.9, nesterov=True), ...,
                hooks=[AdaptiveGradClip(clipping=0.01)])

    The parameters of the modules named in `skip` (default: the final classifier `fc`, which the paper does not
    clip, Sec. 4.1) of the trainer's model `model` are passed through unclipped. The gradients it sees are
    unscaled under a fp16 GradScaler, so the ratios are measured on true gradients. The hook has no state: a
    resumed run clips exactly as an uninterrupted one.
    """

    def __init__(self, clipping: float = 0.01, eps: float = 1e-3, skip: tuple[str, ...] = ("fc",),
                 model: str = "model"):
        if clipping <= 0 or eps <= 0:
            raise ValueError(f"clipping and eps must be > 0, got {clipping} and {eps}")
        self.clipping, self.eps, self.skip, self.model = clipping, eps, tuple(skip), model
        self.skipped: set[int] = set()

    def on_fit_start(self, trainer) -> None:
        if self.model not in trainer.models:
            raise ValueError(f"AdaptiveGradClip: no model named {self.model!r}; the trainer has "
                             f"{', '.join(trainer.models)}")
        try:
            net = trainer.models[self.model]
            self.skipped = {id(p) for name in self.skip for p in net.get_submodule(name).parameters()}
        except AttributeError as e:
            raise ValueError(f"AdaptiveGradClip: cannot find a module to leave unclipped ({e}); pass skip=() to "
                             "clip all") from None

    def after_backward(self, trainer, optimizer: str) -> None:
        params = [p for p in parameters_of(trainer.optimizers[optimizer]) if id(p) not in self.skipped]
        adaptive_grad_clip_(params, self.clipping, self.eps)

    def __repr__(self) -> str:
        return f"AdaptiveGradClip(clipping={self.clipping}, eps={self.eps}, skip={self.skip})"
