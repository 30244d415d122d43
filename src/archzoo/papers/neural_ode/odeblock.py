"""An ODE block: a hidden state defined by an ODE and computed by a black-box solver (Chen et al. 2018, Sec. 1-2).

A residual network updates its state in discrete steps, h_{t+1} = h_t + f(h_t, theta_t); in the limit of many
small steps the hidden state follows an ODE (Eq. 1),

    dh(t)/dt = f(h(t), t, theta),        h(t1) = ODESolve(h(t0), f, t0, t1, theta),

and the output is h(t1), computed by an ODE solver from `torchdiffeq` (the authors' library): the adaptive
Dormand-Prince method ("dopri5", with tolerances rtol, atol) or classic fourth-order Runge-Kutta with a fixed step
("rk4", four evaluations of f per step). Gradients come either by backpropagating through the solver's operations
(`adjoint=False`: memory grows with the number of steps) or by the adjoint method (`adjoint=True`, Sec. 2, Alg. 1):
the adjoint a(t) = dL/dh(t) obeys da/dt = -a^T df/dh (Eq. 4) and dL/dtheta = -int_{t1}^{t0} a^T df/dtheta dt
(Eq. 5); one augmented ODE solved backwards from t1 gives both, with memory constant in the number of steps.

Each block counts its number of function evaluations (NFE) of f: in the forward solve (`nfe_forward`) and in the
backward pass that follows it (`nfe_backward`: the adjoint solve's evaluations; 0 when backpropagating through the
solver, whose backward replays recorded operations without calling f), as in the paper's Fig. 3.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

METHODS = ("dopri5", "rk4")


class CountedDynamics(nn.Module):
    """The dynamics f(t, h) of an ODE block, with the number of times it has been evaluated (`nfe`)."""

    def __init__(self, f: nn.Module):
        super().__init__()
        self.f, self.nfe = f, 0

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        self.nfe += 1
        return self.f(t, h)


class ODEBlock(nn.Module):
    """h(t1) = ODESolve(h(t0), f, t0, t1, theta) (Eq. 1), solved by `torchdiffeq`; `f(t, h)` is an nn.Module.

    method: "dopri5" (adaptive; `rtol`, `atol`) or "rk4" (`steps` fixed steps over [t[0], t[-1]]: 4 NFE each).
    adjoint: gradients by the adjoint method (Alg. 1) instead of backpropagation through the solver.
    `forward(h0)` returns h(t1) with the shape of h0; `solve(h0, t)` returns h at every time of `t`: (T, ...).
    """

    def __init__(self, f: nn.Module, *, t1: float = 1.0, method: str = "dopri5", rtol: float = 1e-3,
                 atol: float = 1e-3, steps: int | None = None, adjoint: bool = False):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "rk4" and (steps is None or steps < 1):
            raise ValueError(f"rk4 takes a fixed number of steps >= 1, got steps={steps!r}")
        if method == "dopri5" and steps is not None:
            raise ValueError(f"dopri5 chooses its own steps (set rtol/atol), got steps={steps!r}")
        self.func = CountedDynamics(f)
        self.t1, self.method, self.rtol, self.atol, self.steps, self.adjoint = t1, method, rtol, atol, steps, adjoint
        self.nfe_forward = 0

    @property
    def nfe_backward(self) -> int:
        """Evaluations of f since the last forward solve ended: those of its backward pass (adjoint solve)."""
        return self.func.nfe

    def solve(self, h0: Tensor, t: Tensor) -> Tensor:
        """h at the times `t` (T,) from h(t[0]) = h0: (T, *h0.shape). Records `nfe_forward`."""
        if h0.numel() == 0:                                     # an empty batch: nothing to solve (dopri5's error
            return h0.expand(len(t), *h0.shape)                 # norm of no values is NaN)
        options = dict(step_size=float((t[-1] - t[0]).abs()) / self.steps) if self.method == "rk4" else None
        solver = odeint_adjoint if self.adjoint else odeint
        self.func.nfe = 0
        h = solver(self.func, h0, t, rtol=self.rtol, atol=self.atol, method=self.method, options=options)
        self.nfe_forward, self.func.nfe = self.func.nfe, 0
        return h

    def forward(self, h0: Tensor) -> Tensor:
        t = torch.tensor([0.0, self.t1], dtype=h0.dtype, device=h0.device)
        return self.solve(h0, t)[-1]

    def extra_repr(self) -> str:
        how = f"steps={self.steps}" if self.method == "rk4" else f"rtol={self.rtol:g}, atol={self.atol:g}"
        return f"t1={self.t1:g}, method={self.method}, {how}, adjoint={self.adjoint}"
