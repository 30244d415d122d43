r"""One-shot task inference by the gradient of the output entropy (Wortsman et al. 2020, Sec. 3.3, Eq. 3-5).

Given a batch x of one unknown task, superpose all k learned supermasks with equal coefficients alpha_i = 1/k
(Eq. 3) and measure the entropy H of the network's mean output distribution (Eq. 4). The right mask gives
confident outputs, so raising its coefficient lowers the entropy fastest; one gradient step infers the task
(Eq. 5, "one-shot"):

    p(alpha) = f(x, W \odot \sum_i alpha_i M^i),     task = argmax_i ( -dH(p(alpha)) / d alpha_i )   at alpha = 1/k

The paper computes the gradient on a batch of images that share one task; so do we.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .supermask import supermask_layers


def output_entropy(logits: Tensor) -> Tensor:
    """H(p), Eq. 4: the entropy of softmax(logits), averaged over the batch. (B, C) -> ()."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1).mean()


def superpose(model: nn.Module, alphas: Tensor | None) -> None:
    """Make every supermask layer of `model` compute with sum_i alpha_i M^i (Eq. 3); None undoes it."""
    layers = supermask_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no supermask layers to superpose")
    for layer in layers:
        layer.superpose(alphas)


def entropy_gradient(model: nn.Module, x: Tensor) -> Tensor:
    """dH/d alpha at alpha = (1/k, ..., 1/k) for the batch `x`: a (k,) tensor (Eq. 5's gradient)."""
    layers = supermask_layers(model)
    num_tasks = layers[0].num_tasks if layers else 1
    alphas = torch.full((num_tasks,), 1.0 / num_tasks, requires_grad=True)
    superpose(model, alphas)
    try:
        with torch.enable_grad():
            entropy = output_entropy(model(x))                   # Eq. 4 on p(alpha) of Eq. 3
            (grad,) = torch.autograd.grad(entropy, alphas)
    finally:
        superpose(model, None)
    return grad


def infer_task(model: nn.Module, x: Tensor) -> int:
    """The task of batch `x`: argmax_i -dH/d alpha_i (Eq. 5). The model's mode is used as it is (eval for tests)."""
    return int((-entropy_gradient(model, x)).argmax())
