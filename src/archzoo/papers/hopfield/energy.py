r"""The continuous modern Hopfield network (Ramsauer et al. 2020, arXiv:2008.02217, Sec. 2) and the classical one.

N stored patterns x_1 .. x_N in R^d are the rows of X (N, d) (the paper's columns of X; rows here so that the
update reads as attention, Q K^T). A state pattern xi in R^d has the energy (Eq. 2)

    E(xi) = -lse(beta, X xi) + 1/2 xi^T xi + beta^{-1} log N + 1/2 M^2,   lse(beta, z) = beta^{-1} log sum exp(beta z)

with M = max_i |x_i|, and the update rule (Eq. 3)

    xi^new = X^T softmax(beta X xi)

which is the concave-convex procedure on E: the energy never increases (Theorem 1), and a pattern well separated
from the others is retrieved in one update with an exponentially small error (Theorems 3, 4). Several state
patterns are the rows of Xi (S, d): Xi^new = softmax(beta Xi X^T) X, attention with queries Xi and keys = values X.

The classical binary network (Hopfield 1982) stores +-1 patterns in Hebbian weights W = X^T X with zero diagonal
and updates one unit at a time, xi_k <- sign(W xi)_k; it holds about 0.14 d random patterns (Amit et al. 1985).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...core.checks import check_shape


def _check(xi: Tensor, X: Tensor, beta: float) -> None:
    d = check_shape(X, "... N d", name="X", dtype="float")["d"]
    check_shape(xi, "... S d", name="xi", dtype="float", d=d)
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")


def lse(beta: float, z: Tensor) -> Tensor:
    """lse(beta, z) = beta^{-1} log sum_i exp(beta z_i) over the last dimension (Sec. 2)."""
    return torch.logsumexp(beta * z, dim=-1) / beta


def energy(xi: Tensor, X: Tensor, beta: float) -> Tensor:
    """E(xi) of Eq. 2 for each state: xi (..., S, d), stored patterns X (..., N, d) -> (..., S)."""
    _check(xi, X, beta)
    n = X.shape[-2]
    m = X.norm(dim=-1).amax(-1, keepdim=True)                       # M, the largest pattern norm: (..., 1)
    return (-lse(beta, xi @ X.transpose(-2, -1))                    # -lse(beta, X^T xi): (..., S)
            + 0.5 * (xi * xi).sum(-1) + math.log(n) / beta + 0.5 * m ** 2)


def update(xi: Tensor, X: Tensor, beta: float, steps: int = 1) -> Tensor:
    """`steps` applications of Eq. 3, xi <- softmax(beta xi X^T) X: xi (..., S, d), X (..., N, d) -> (..., S, d)."""
    _check(xi, X, beta)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    for _ in range(steps):
        xi = torch.softmax(beta * xi @ X.transpose(-2, -1), dim=-1) @ X     # (..., S, N) @ (N, d)
    return xi


def hebbian_weights(X: Tensor) -> Tensor:
    """The classical network's weights W = sum_i x_i x_i^T with zero diagonal: X (N, d) -> (d, d)."""
    check_shape(X, "N d", name="X", dtype="float")
    return (X.transpose(0, 1) @ X).fill_diagonal_(0.0)


def classical_retrieve(xi: Tensor, W: Tensor, sweeps: int = 20, generator: torch.Generator | None = None) -> Tensor:
    """Asynchronous sign updates of the classical network until no unit changes (at most `sweeps` sweeps).

    xi (S, d) are +-1 states (0 for unknown units); each sweep visits the d units in a random order and sets
    xi_k = sign(W_k . xi) (a zero field keeps the unit). Returns the states it settles in, (S, d).
    """
    d = check_shape(W, "d d", name="W", dtype="float")["d"]
    check_shape(xi, "S d", name="xi", dtype="float", d=d)
    xi = xi.clone()
    for _ in range(sweeps):
        before = xi.clone()
        for k in torch.randperm(d, generator=generator).tolist():
            field = xi @ W[k]                                        # (S,) local field of unit k
            xi[:, k] = torch.where(field == 0, xi[:, k], torch.sign(field))
        if torch.equal(xi, before):
            break
    return xi
