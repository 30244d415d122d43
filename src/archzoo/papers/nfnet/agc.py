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
from torch import Tensor, nn


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


class AGC(torch.optim.Optimizer):
    """An optimizer that applies AGC (Eq. 3 of arXiv:2102.06171) to the gradients before the wrapped optimizer steps.

        opt = AGC(torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.9, nesterov=True), model, clipping=0.01)

    The parameters of the modules named in `skip` (default: the final classifier `fc`, which the paper does not
    clip, Sec. 4.1) are passed through unclipped. The wrapper shares the wrapped optimizer's `param_groups` and
    `state`, so learning-rate schedulers, `state_dict` and checkpoints work as with the optimizer itself, and
    `engine.train(..., optimizer=lambda m: AGC(...))` uses it directly. Under a fp16 GradScaler the gradients are
    unscaled before `step`, so the ratios are measured on true gradients.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module, clipping: float = 0.01, eps: float = 1e-3,
                 skip: tuple[str, ...] = ("fc",)):
        if clipping <= 0 or eps <= 0:
            raise ValueError(f"clipping and eps must be > 0, got {clipping} and {eps}")
        self.optimizer, self.clipping, self.eps = optimizer, clipping, eps
        try:
            skipped = {id(p) for name in skip for p in model.get_submodule(name).parameters()}
        except AttributeError as e:
            raise ValueError(f"AGC: cannot find a module to leave unclipped ({e}); pass skip=() to clip all") from None
        self.clipped = [p for p in model.parameters() if id(p) not in skipped]
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups, self.state = optimizer.param_groups, optimizer.state      # one set of groups and state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        adaptive_grad_clip_(self.clipped, self.clipping, self.eps)
        self.optimizer.step()           # AGC is itself a gradient method: an optimizer wrapping an optimizer
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict)
        self.param_groups, self.state = self.optimizer.param_groups, self.optimizer.state

    def __repr__(self) -> str:
        return f"AGC(clipping={self.clipping}, eps={self.eps}, {self.optimizer!r})"
