"""Irregularly sampled 2-D spirals: the time series of the latent ODE experiment (Chen et al. 2018, Sec. 5.1).

As in the authors' `latent_ode.py` (`generate_spiral2d`), each trajectory is a piece of one of two spirals with
time-invariant dynamics, on a time grid t_k = k dt over [0, t_max]:

    counter-clockwise:  r = a + b t,                 (x, y) = (r cos t + 5, r sin t)
    clockwise:          r = a + 50 b / (t_max + 1 - t),   (x, y) = (r cos(t_max + 1 - t) - 5, r sin(t_max + 1 - t))

A trajectory starts at a random grid index and covers `window` observed points plus `horizon` points to
extrapolate. Of the window, `n_obs` points are kept at random (without replacement, sorted): the irregular
observations, with Gaussian noise of std `noise_std`. The returned `Spirals` holds, for N trajectories,

    t        (T,)        the grid times of one trajectory, from 0 (T = window + horizon)
    clean    (N, T, 2)   the noise-free trajectories (the targets)
    obs_idx  (N, n_obs)  the observed grid indices, sorted, all < window
    obs      (N, n_obs, 2) the noisy observations at those indices
    clockwise (N,)       which spiral each trajectory follows
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .registry import register_dataset


@dataclass
class Spirals:
    t: Tensor
    clean: Tensor
    obs_idx: Tensor
    obs: Tensor
    clockwise: Tensor
    window: int

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def obs_t(self) -> Tensor:
        """The times of the observations: (N, n_obs)."""
        return self.t[self.obs_idx]


def spiral_curves(ts: np.ndarray, t_max: float, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """The counter-clockwise and the clockwise spiral at the times `ts`: two (T, 2) arrays."""
    r_cc = a + b * ts
    cc = np.stack([r_cc * np.cos(ts) + 5.0, r_cc * np.sin(ts)], 1)
    z_cw = t_max + 1.0 - ts
    r_cw = a + b * 50.0 / z_cw
    cw = np.stack([r_cw * np.cos(z_cw) - 5.0, r_cw * np.sin(z_cw)], 1)
    return cc, cw


def make_spirals(n: int = 1000, window: int = 50, horizon: int = 50, n_obs: int = 30, grid: int = 500,
                 t_max: float = 6 * np.pi, noise_std: float = 0.3, a: float = 0.0, b: float = 0.3,
                 seed: int = 0) -> Spirals:
    """`n` spiral pieces on a grid of `grid` points over [0, t_max] (the authors': a = 0, b = 0.3, noise 0.3,
    t_max = 6 pi); each has `window` + `horizon` consecutive grid points and `n_obs` observed points in its window."""
    if not 1 <= n_obs <= window:
        raise ValueError(f"n_obs must be in [1, window={window}], got {n_obs}")
    if window + horizon > grid:
        raise ValueError(f"window + horizon ({window + horizon}) must not exceed the grid ({grid} points)")
    rng = np.random.default_rng(seed)
    ts = np.linspace(0.0, t_max, grid)
    curves = spiral_curves(ts, t_max, a, b)
    length = window + horizon
    starts = rng.integers(0, grid - length + 1, size=n)
    clockwise = rng.random(n) < 0.5
    clean = np.stack([curves[int(cw)][s:s + length] for s, cw in zip(starts, clockwise)])       # (N, T, 2)
    obs_idx = np.sort(np.stack([rng.choice(window, n_obs, replace=False) for _ in range(n)]), 1)  # (N, n_obs)
    obs = np.take_along_axis(clean, obs_idx[:, :, None], 1) + rng.normal(0.0, noise_std, (n, n_obs, 2))
    f32 = torch.float32
    return Spirals(t=torch.tensor(ts[:length] - ts[0], dtype=f32), clean=torch.tensor(clean, dtype=f32),
                   obs_idx=torch.from_numpy(obs_idx), obs=torch.tensor(obs, dtype=f32),
                   clockwise=torch.from_numpy(clockwise), window=window)


register_dataset("spirals", make_spirals, kind="trajectories",
                 description="irregularly sampled noisy 2-D spirals with a future to extrapolate (Neural ODE, Sec. 5)")
