"""Continuous normalizing flow (Chen et al. 2018, Sec. 4).

If z(t) follows dz/dt = f(z(t), t), its log-density changes by the trace of the Jacobian (Theorem 1, Eq. 8):

    d log p(z(t)) / dt = -tr(df/dz(t)),

so a flow from a base density p(z(t0)) = N(0, I) to data z(t1) = x gives the exact log-likelihood

    log p(x) = log N(z(t0); 0, I) - int_{t0}^{t1} tr(df/dz) dt,

computed by solving [z, Delta log p] backwards from [x, 0] at t1 to t0 (`CNF.log_prob`). The trace costs D
backward passes exactly (`trace_exact`, used in 2-D), or one with Hutchinson's estimator E[eps^T (df/dz) eps]
(`trace_hutchinson`, unbiased for Rademacher or Gaussian eps; FFJORD, Grathwohl et al. 2019), used otherwise.

The dynamics are the paper's planar CNF (Eq. 10, the authors' `examples/cnf.py`): M hidden units
dz/dt = 1/M sum_m u_m(t) tanh(w_m(t)^T z + b_m(t)), whose parameters come from a hypernetwork of t, with a
sigmoid gate on u (`HyperPlanarDynamics`).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from .odeblock import ODEBlock

TRACES = ("auto", "exact", "hutchinson")


def trace_exact(dz: Tensor, z: Tensor) -> Tensor:
    """tr(d dz / dz) per sample, one backward pass per dimension: (B, D), (B, D) -> (B,)."""
    return sum(torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i] for i in range(z.shape[1]))


def trace_hutchinson(dz: Tensor, z: Tensor, eps: Tensor) -> Tensor:
    """eps^T (d dz / dz) eps per sample, an unbiased estimate of the trace for E[eps eps^T] = I: (B,)."""
    vjp = torch.autograd.grad(dz, z, eps, create_graph=True)[0]              # eps^T J, (B, D)
    return (vjp * eps).sum(1)


class HyperPlanarDynamics(nn.Module):
    """f(z, t) = 1/M sum_m u_m(t) tanh(w_m(t)^T z + b_m(t)) with (w, u, b) from a hypernetwork of t (Eq. 10)."""

    def __init__(self, dim: int = 2, width: int = 64, hidden: int = 32):
        super().__init__()
        self.dim, self.width = dim, width
        self.hyper = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                   nn.Linear(hidden, 3 * width * dim + width))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:                       # (B, D) -> (B, D)
        params = self.hyper(t.reshape(1, 1).to(z))[0]
        w, u, gate, b = params.split([self.width * self.dim] * 3 + [self.width])
        w = rearrange(w, "(m d) -> m d", m=self.width)                          # (M, D)
        u = rearrange(u * torch.sigmoid(gate), "(m d) -> m d", m=self.width)   # gated u, (M, D)
        h = torch.tanh(z @ w.T + b)                                           # (B, M)
        return h @ u / self.width                                             # (B, D)


class FlowWithLogDensity(nn.Module):
    """The augmented dynamics of Theorem 1: d[z, log p]/dt = [f(z, t), -tr(df/dz)]."""

    def __init__(self, f: nn.Module, trace: str):
        super().__init__()
        self.f, self.trace, self.eps = f, trace, None

    def forward(self, t: Tensor, state: Tensor) -> Tensor:                   # (B, D + 1)
        with torch.enable_grad():
            z = state[:, :-1]
            z = z if z.requires_grad else z.detach().requires_grad_(True)
            dz = self.f(t, z)
            tr = trace_exact(dz, z) if self.trace == "exact" else trace_hutchinson(dz, z, self.eps)
        return torch.cat([dz, -tr[:, None]], 1)


class CNF(nn.Module):
    """A continuous normalizing flow on R^D from N(0, I) at t = 0 to the data at t = 1 (Sec. 4).

    trace: "exact" (D backward passes per evaluation), "hutchinson" (one; a Rademacher eps drawn per solve and
    held fixed along it, as in FFJORD) or "auto": exact up to D = 2, Hutchinson above.
    """

    def __init__(self, dim: int = 2, width: int = 64, hidden: int = 32, *, trace: str = "auto",
                 method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5, steps: int | None = None,
                 adjoint: bool = False):
        super().__init__()
        if trace not in TRACES:
            raise ValueError(f"trace must be one of {TRACES}, got {trace!r}")
        self.dim = dim
        trace = ("exact" if dim <= 2 else "hutchinson") if trace == "auto" else trace
        self.dynamics = FlowWithLogDensity(HyperPlanarDynamics(dim, width, hidden), trace)
        self.block = ODEBlock(self.dynamics, method=method, rtol=rtol, atol=atol, steps=steps, adjoint=adjoint)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points of shape (B, {self.dim}), got {tuple(x.shape)}")

    def flow(self, z: Tensor, t0: float, t1: float) -> tuple[Tensor, Tensor]:
        """z(t1) and int_{t1}^{t0} tr(df/dz) dt from z(t0) = z: (B, D), (B,)."""
        self.dynamics.eps = torch.randint(0, 2, z.shape, device=z.device).to(z) * 2 - 1    # Rademacher
        t = torch.tensor([t0, t1], dtype=z.dtype, device=z.device)
        state = self.block.solve(torch.cat([z, z.new_zeros(len(z), 1)], 1), t)[-1]       # (B, D + 1)
        return state[:, :-1], state[:, -1]

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x), (B, D) -> (B,): solve [z, Delta log p] from [x, 0] at t = 1 back to t = 0."""
        self._check(x)
        z0, delta = self.flow(x, 1.0, 0.0)                                     # delta = int_0^1 tr dt
        log_p0 = -0.5 * (z0**2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)
        return log_p0 - delta

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z(1) for n draws z(0) ~ N(0, I): (n, D)."""
        p = next(self.parameters())
        z0 = torch.randn(n, self.dim, generator=generator, dtype=p.dtype).to(p.device)
        return self.flow(z0, 0.0, 1.0)[0]
