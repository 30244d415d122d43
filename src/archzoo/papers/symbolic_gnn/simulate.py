r"""The n-body simulations of Cranmer et al. 2020 (arXiv:2006.11287, Sec. 4.1 and Appendix, Fig. 3; the authors'
`simulate.py`): n particles in D dimensions interacting pairwise through one of three potentials of the distance
r' = r + 0.01 (the authors' softening, which keeps the 1/r laws finite):

    spring:  U = (r' - 1)^2            force on i from j  F_ij = -2 (r' - 1)       (x_i - x_j) / r
    r1:      U = m_i m_j log r'        (a 1/r force)      F_ij = -m_i m_j / r'     (x_i - x_j) / r
    r2:      U = -m_i m_j / r'         (a 1/r^2 force)    F_ij = -m_i m_j / r'^2   (x_i - x_j) / r

A particle's state is (position, velocity, charge, mass), 2D + 2 numbers (the charge is carried, as in the authors'
data, but none of these three laws uses it); its acceleration is a_i = sum_j F_ij / m_i. Initial states are
standard normal with the mass exp(N(0, 1)) (the authors' `make_sim`); trajectories are integrated with velocity
Verlet (symplectic, so the energy stays bounded; the authors use an adaptive ODE solver). As in the paper, the
training pairs are (states, accelerations) at sampled times: the model learns the instantaneous dynamics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ...data.registry import register_dataset

LAWS = ("spring", "r1", "r2")
SOFTENING = 1e-2             # r' = r + 0.01 in every potential (the authors' `bounded_dist`)
DT = {"spring": 1e-2, "r1": 5e-3, "r2": 1e-3}    # integration steps: smaller where close encounters are violent


def _check_law(law: str) -> None:
    if law not in LAWS:
        raise ValueError(f"law must be one of {LAWS}, got {law!r}")


def check_states(x: Tensor, dim: int | None = None) -> int:
    """Check states (..., n, 2D + 2); returns D."""
    if x.dim() < 2 or x.shape[-1] < 4 or x.shape[-1] % 2:
        raise ValueError(f"expected states of shape (..., n, 2D + 2) (position, velocity, charge, mass), got "
                         f"{tuple(x.shape)}")
    d = (x.shape[-1] - 2) // 2
    if dim is not None and d != dim:
        raise ValueError(f"expected states of shape (..., n, {2 * dim + 2}) for D = {dim}, got {tuple(x.shape)}")
    return d


def pair_potential(x_i: Tensor, x_j: Tensor, law: str) -> Tensor:
    """U(x_i, x_j) for states (..., 2D + 2): the potential energy of one pair (the module docstring's table)."""
    _check_law(law)
    d = check_states(x_i[..., None, :])
    r = (x_i[..., :d] - x_j[..., :d]).norm(dim=-1) + SOFTENING                   # r'
    mass = x_i[..., -1] * x_j[..., -1]
    return {"spring": (r - 1) ** 2, "r1": mass * torch.log(r), "r2": -mass / r}[law]


def pair_force(x_i: Tensor, x_j: Tensor, law: str) -> Tensor:
    """F_ij = -dU/dx_i, the force on particle i from particle j, (..., D) for states (..., 2D + 2) with x_i != x_j
    (the analytic gradients of `pair_potential`)."""
    _check_law(law)
    d = check_states(x_i[..., None, :])
    delta = x_i[..., :d] - x_j[..., :d]                                          # (..., D)
    r = delta.norm(dim=-1, keepdim=True)
    rs = r + SOFTENING
    mass = x_i[..., -1:] * x_j[..., -1:]
    magnitude = {"spring": 2 * (rs - 1), "r1": mass / rs, "r2": mass / rs ** 2}[law]     # dU/dr'
    return -magnitude * delta / r


def accelerations(x: Tensor, law: str) -> Tensor:
    """a_i = sum_{j != i} F_ij / m_i for states (..., n, 2D + 2); returns (..., n, D)."""
    d = check_states(x)
    n = x.shape[-2]
    x_i, x_j = x[..., :, None, :], x[..., None, :, :]                             # receivers, senders
    off = ~torch.eye(n, dtype=torch.bool, device=x.device)
    shape = (*x.shape[:-2], n, n, x.shape[-1])
    forces = pair_force(x_i.expand(shape)[..., off, :], x_j.expand(shape)[..., off, :], law)   # (..., n (n-1), D)
    total = forces.reshape(*x.shape[:-2], n, n - 1, d).sum(-2)                   # (..., n, D)
    return total / x[..., -1:]


def energy(x: Tensor, law: str) -> Tensor:
    """Kinetic plus potential energy of states (..., n, 2D + 2), each pair counted once; returns (...)."""
    d = check_states(x)
    n = x.shape[-2]
    kinetic = 0.5 * (x[..., -1] * x[..., d:2 * d].pow(2).sum(-1)).sum(-1)
    i, j = torch.triu_indices(n, n, offset=1)
    return kinetic + pair_potential(x[..., i, :], x[..., j, :], law).sum(-1)


def initial_states(n_sims: int, n_bodies: int, dim: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """(n_sims, n_bodies, 2D + 2) standard normal states with masses exp(N(0, 1)) (the authors' `make_sim`)."""
    x = torch.randn(n_sims, n_bodies, 2 * dim + 2, generator=generator, dtype=torch.float64)
    x[..., -1] = x[..., -1].exp()
    return x


def simulate(x0: Tensor, law: str, steps: int, dt: float, every: int = 1) -> Tensor:
    """Integrate states (S, n, 2D + 2) for `steps` velocity-Verlet steps of `dt`; returns every `every`-th state,
    (steps // every + 1, S, n, 2D + 2), the initial one first."""
    d = check_states(x0)
    if steps < 0 or every < 1 or dt <= 0:
        raise ValueError(f"need steps >= 0, every >= 1 and dt > 0, got {steps}, {every}, {dt}")
    x = x0.clone()
    a = accelerations(x, law)
    out = [x.clone()]
    for step in range(1, steps + 1):
        x[..., d:2 * d] += 0.5 * dt * a                                          # half kick
        x[..., :d] += dt * x[..., d:2 * d]                                       # drift
        a = accelerations(x, law)
        x[..., d:2 * d] += 0.5 * dt * a                                          # half kick
        if step % every == 0:
            out.append(x.clone())
    return torch.stack(out)


@dataclass
class NBodyData:
    """(states, accelerations) pairs: `train`/`test` are TensorDatasets of x (m, n, 2D + 2) and a (m, n, D) in
    float32, from disjoint simulations."""

    name: str
    law: str
    train: TensorDataset
    test: TensorDataset
    dim: int

    def __repr__(self) -> str:
        return f"NBodyData({self.law!r}, train={len(self.train)}, test={len(self.test)}, dim={self.dim})"


def load_nbody(law: str = "spring", n_train: int = 200, n_test: int = 50, n_bodies: int = 4, dim: int = 2,
               steps: int = 500, samples: int = 10, dt: float | None = None, seed: int = 0) -> NBodyData:
    """`n_train` + `n_test` simulations of `steps` steps (dt: `DT[law]`, the authors' 500 steps of their demo),
    each giving `samples` evenly spaced states after the first; a simulation whose states leave |x| < 1e3 or turn
    non-finite (a collision the integrator cannot follow) is drawn again."""
    _check_law(law)
    if min(n_train, n_test, n_bodies - 1, dim, samples) < 1 or steps < samples:
        raise ValueError(f"need n_train, n_test, dim, samples >= 1, n_bodies >= 2 and steps >= samples, got "
                         f"{n_train}, {n_test}, {dim}, {samples}, {n_bodies}, {steps}")
    generator = torch.Generator().manual_seed(seed)
    states, needed = [], n_train + n_test
    while needed > 0:
        x = simulate(initial_states(needed, n_bodies, dim, generator), law, steps, dt or DT[law],
                     every=steps // samples)[1:samples + 1]                       # (samples, S, n, F)
        good = (x.isfinite() & (x.abs() < 1e3)).flatten(2).all(-1).all(0)
        states.append(x[:, good].transpose(0, 1))                                 # (S_good, samples, n, F)
        needed -= int(good.sum())
    x = torch.cat(states)[:n_train + n_test]
    a = accelerations(x, law)
    split = [t.flatten(0, 1).float() for t in (x, a)]
    train = TensorDataset(*(t[:n_train * samples] for t in split))
    test = TensorDataset(*(t[n_train * samples:] for t in split))
    return NBodyData(f"nbody_{law}", law, train, test, dim)


register_dataset("nbody", load_nbody, kind="nbody",
                 description="n-body simulations (spring, 1/r, 1/r^2 forces), states -> accelerations (Cranmer+ 2020)")
