r"""Derivatives of a network with respect to its input coordinates, by autograd (Sitzmann et al. 2020, Sec. 3).

The derivative of a SIREN is a SIREN again: d/dx sin(omega_0 (W x + b)) = omega_0 W^T cos(...), and
cos(z) = sin(z + pi/2) is a phase-shifted sine, so the gradient and the Laplacian of \Phi are as well-behaved
as \Phi itself and can be supervised directly (Sec. 3.1, Eq. 2-3; Sec. 4.1, Poisson equation). Every function
keeps the graph (`create_graph=True`), so a loss on the derivatives trains the network.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gradient(y: Tensor, x: Tensor) -> Tensor:
    r"""\nabla_x y for a scalar field y (..., 1) of the coordinates x (..., D): (..., D). `x` must require grad
    and `y` be computed from it point by point (each y depends only on its own x)."""
    if y.shape[-1] != 1 or y.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"gradient: expected a scalar field y (..., 1) over x (..., D), got {tuple(y.shape)} and "
                         f"{tuple(x.shape)}")
    return torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)[0]


def divergence(v: Tensor, x: Tensor) -> Tensor:
    r"""\nabla \cdot v = \sum_d \partial v_d / \partial x_d for a vector field v (..., D) of x (..., D): (..., 1)."""
    if v.shape != x.shape:
        raise ValueError(f"divergence: expected a vector field v with the shape of x, got {tuple(v.shape)} and "
                         f"{tuple(x.shape)}")
    return sum(gradient(v[..., d:d + 1], x)[..., d:d + 1] for d in range(x.shape[-1]))


def laplacian(y: Tensor, x: Tensor) -> Tensor:
    r"""\Delta y = \nabla \cdot \nabla y for a scalar field y (..., 1) of x (..., D): (..., 1)."""
    return divergence(gradient(y, x), x)
