"""A latent ODE for irregularly sampled time series, and the RNN it is compared with (Chen et al. 2018, Sec. 5).

Generative model (Eq. 11-13, Fig. 6): an initial latent state z_t0 ~ p(z_t0) = N(0, I) evolves by an ODE,
z_t1..z_tN = ODESolve(z_t0, f, theta_f, t0, ..., tN), and each observation is x_ti ~ p(x | z_ti, theta_x), a
Gaussian of fixed std around a decoder's output. Recognition (Sec. 5, the authors' `latent_ode.py`): an RNN reads
the observations backwards in time and outputs the mean and log-variance of q(z_t0 | x); training maximises the
ELBO  E_q[log p(x | z)] - KL(q(z_t0 | x) || N(0, I))  with one reparameterised sample. Because the latent
trajectory is defined at every time, the model interpolates between irregular observations and extrapolates
beyond them by solving the same ODE further. Sizes are the authors': latent 4, dynamics and decoder 20 hidden
units (ELU, ReLU), recognition RNN 25 hidden units. Irregular sampling enters the recognition RNN as the gap
between consecutive observations, an extra input.

The baseline is an RNN (a GRU of 25 units) that also reads the gaps: trained to predict the next observation
from the previous ones (teacher forcing), it extrapolates by feeding back its own predictions (Sec. 5.1, Table 2).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from .odeblock import ODEBlock


def check_observations(obs: Tensor, obs_t: Tensor, dim: int) -> None:
    if obs.dim() != 3 or obs.shape[-1] != dim or obs_t.shape != obs.shape[:2]:
        raise ValueError(f"expected observations (B, N, {dim}) and their times (B, N), got {tuple(obs.shape)} and "
                         f"{tuple(obs_t.shape)}")


def gaps(obs_t: Tensor) -> Tensor:
    """The time since the previous observation (since t0 = 0 for the first): (B, N) -> (B, N, 1)."""
    return torch.diff(obs_t, dim=1, prepend=torch.zeros_like(obs_t[:, :1]))[..., None]


class RecognitionRNN(nn.Module):
    """q(z_t0 | x_t1..x_tN): an Elman RNN run from the last observation back to t0; (mean, log-variance)."""

    def __init__(self, latent_dim: int = 4, obs_dim: int = 2, hidden: int = 25):
        super().__init__()
        self.hidden = hidden
        self.i2h = nn.Linear(obs_dim + 1 + hidden, hidden)       # input: x_ti, t_i - t_{i-1}, h
        self.h2o = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, obs: Tensor, obs_t: Tensor) -> tuple[Tensor, Tensor]:    # (B, N, D), (B, N)
        inputs = torch.cat([obs, gaps(obs_t)], -1)                              # (B, N, D + 1)
        h = obs.new_zeros(len(obs), self.hidden)
        for i in reversed(range(obs.shape[1])):
            h = torch.tanh(self.i2h(torch.cat([inputs[:, i], h], -1)))         # (B, hidden)
        mean, logvar = self.h2o(h).chunk(2, -1)                                 # (B, latent) each
        return mean, logvar


class LatentDynamics(nn.Module):
    """f(z, t): the latent ODE's dynamics, time-invariant (Linear-ELU-Linear-ELU-Linear)."""

    def __init__(self, latent_dim: int = 4, hidden: int = 20):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                 nn.Linear(hidden, latent_dim))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.net(z)


def gaussian_log_likelihood(x: Tensor, mean: Tensor, std: float) -> Tensor:
    return -0.5 * (((x - mean) / std) ** 2 + 2 * math.log(std) + math.log(2 * math.pi))


class LatentODE(nn.Module):
    """Recognition RNN -> z_t0 -> ODESolve over the time grid -> decoder (Sec. 5, Fig. 6).

    `forward(obs, obs_t, t)` returns the decoded trajectory at the grid times `t` (T,) from the posterior mean:
    (B, T, obs_dim). `loss(obs, obs_t, obs_idx, t)` is the negative ELBO per trajectory, the observations being
    at the grid indices `obs_idx` (B, N) of `t`.
    """

    def __init__(self, latent_dim: int = 4, obs_dim: int = 2, hidden: int = 20, rnn_hidden: int = 25,
                 noise_std: float = 0.3, *, method: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-4,
                 steps: int | None = None, adjoint: bool = False):
        super().__init__()
        self.obs_dim, self.noise_std = obs_dim, noise_std
        self.encoder = RecognitionRNN(latent_dim, obs_dim, rnn_hidden)
        self.ode = ODEBlock(LatentDynamics(latent_dim, hidden), method=method, rtol=rtol, atol=atol, steps=steps,
                            adjoint=adjoint)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, obs_dim))

    def decode(self, z0: Tensor, t: Tensor) -> Tensor:
        z = rearrange(self.ode.solve(z0, t), "t b l -> b t l")                  # (B, T, latent)
        return self.decoder(z)                                                  # (B, T, obs_dim)

    def forward(self, obs: Tensor, obs_t: Tensor, t: Tensor) -> Tensor:
        check_observations(obs, obs_t, self.obs_dim)
        return self.decode(self.encoder(obs, obs_t)[0], t)

    def loss(self, obs: Tensor, obs_t: Tensor, obs_idx: Tensor, t: Tensor) -> Tensor:
        """-ELBO = -E_q[log p(x | z)] + KL(q(z_t0 | x) || N(0, I)), one sample z_t0 = mean + std eps, batch mean."""
        check_observations(obs, obs_t, self.obs_dim)
        mean, logvar = self.encoder(obs, obs_t)
        z0 = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        x_hat = self.decode(z0, t[: int(obs_idx.max()) + 1])                   # up to the last observation
        x_hat = x_hat.gather(1, obs_idx[..., None].expand(-1, -1, self.obs_dim))  # (B, N, obs_dim)
        log_px = gaussian_log_likelihood(obs, x_hat, self.noise_std).sum((1, 2))
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(-1)              # analytic KL to N(0, I)
        return (kl - log_px).mean()


class RNNForecaster(nn.Module):
    """The RNN baseline: a GRU reading [x_i, gap to x_{i+1}] predicts x_{i+1}; it extrapolates autoregressively."""

    def __init__(self, obs_dim: int = 2, hidden: int = 25):
        super().__init__()
        self.obs_dim = obs_dim
        self.cell = nn.GRUCell(obs_dim + 1, hidden)
        self.out = nn.Linear(hidden, obs_dim)
        self.hidden = hidden

    def next_step(self, x: Tensor, dt: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:   # (B, D), (B, 1), (B, H)
        h = self.cell(torch.cat([x, dt], -1), h)
        return self.out(h), h

    def loss(self, obs: Tensor, obs_t: Tensor) -> Tensor:
        """Mean squared error of the one-step predictions of x_2..x_N from the observations before them."""
        check_observations(obs, obs_t, self.obs_dim)
        h, dts, losses = obs.new_zeros(len(obs), self.hidden), gaps(obs_t), []
        for i in range(obs.shape[1] - 1):
            pred, h = self.next_step(obs[:, i], dts[:, i + 1], h)
            losses.append(((pred - obs[:, i + 1]) ** 2).sum(-1))
        return torch.stack(losses, 1).mean()

    def forward(self, obs: Tensor, obs_t: Tensor, query_t: Tensor) -> Tensor:
        """Read the observations, then predict at the later times `query_t` (Q,), feeding back its predictions."""
        check_observations(obs, obs_t, self.obs_dim)
        h, dts = obs.new_zeros(len(obs), self.hidden), gaps(obs_t)
        for i in range(obs.shape[1] - 1):
            _, h = self.next_step(obs[:, i], dts[:, i + 1], h)
        x, last, preds = obs[:, -1], obs_t[:, -1:], []
        for tq in query_t:
            x, h = self.next_step(x, tq - last, h)
            last = tq.expand_as(last)
            preds.append(x)
        return torch.stack(preds, 1)                                            # (B, Q, D)
