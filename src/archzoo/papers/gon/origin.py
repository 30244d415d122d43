r"""The gradient-origin latent (Bond-Taylor & Willcocks 2020, arXiv:2007.02798, Sec. 3, Eq. 3).

A GON has no encoder. The latent of a data point x is one gradient step on the reconstruction loss from the
origin of latent space:

    z = -\nabla_{z_0} L(x, F(z_0)) |_{z_0 = 0}                                                   (Eq. 3)

and the decoder F is trained on L(x, F(z)) with z in the graph (Eq. 4), so that the gradient also learns to be
a good encoder: training differentiates through this gradient (second derivatives, `create_graph=True`). The
inner loss is summed over the examples of a batch, so each example's latent is its own loss's gradient and
does not depend on the rest of the batch (the authors' code averages over the batch, which rescales every
latent by 1 / batch size).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def gradient_origin(loss_fn: Callable[[Tensor], Tensor], shape: tuple[int, ...], *, dtype: torch.dtype,
                    device: torch.device | str = "cpu", create_graph: bool | None = None) -> Tensor:
    """z = -grad_{z0} loss_fn(z0) at z0 = 0 (Eq. 3), `shape` = (B, latent): `loss_fn` maps the latents (B, latent)
    to the per-example losses (B,). With `create_graph` (default: when gradients are being recorded) z stays in
    the graph, so that an outer loss on F(z) trains the decoder through its own gradient (Eq. 4)."""
    if create_graph is None:
        create_graph = torch.is_grad_enabled()
    with torch.enable_grad():                          # the latent needs a gradient even under torch.no_grad()
        z0 = torch.zeros(shape, dtype=dtype, device=device, requires_grad=True)
        (grad,) = torch.autograd.grad(loss_fn(z0).sum(), z0, create_graph=create_graph)
    return -grad                                       # (B, latent)
