"""Generated PDE data for operator learning (Li et al., FNO, 2020, arXiv:2010.08895, Sec. 5.1-5.2): our own solvers.

- `burgers`: 1-D viscous Burgers on the periodic interval [0, 1), `u_t + (u^2 / 2)_x = nu u_xx`, nu = 0.1; the
  map is u(., 0) -> u(., 1), with u(., 0) drawn from the Gaussian random field N(0, 625 (-Delta + 25 I)^-2).
  Solved by a pseudo-spectral method (`solve_burgers`): the diffusion exactly through an integrating factor, the
  nonlinear term by classical Runge-Kutta 4, with 2/3 de-aliasing.
- `darcy`: 2-D Darcy flow on the unit square, `-div(a grad u) = f`, f = 1, u = 0 on the boundary; the map is
  a -> u, with a piecewise constant: 12 where a Gaussian random field N(0, (-Delta + 9 I)^-2) (Neumann
  boundary, cosine series) is positive and 3 where it is negative. Solved by second-order finite differences
  (`solve_darcy`, scipy.sparse).

Both draw their random fields from a fixed number of modes, so the same seed gives the same functions at every
resolution: `load_dataset("burgers", resolution=256)` holds the samples of `resolution=64` on a finer grid (the
zero-shot super-resolution test). Inputs and targets are `(n, 1, s)` / `(n, 1, s, s)` float32 tensors; generated
sets are kept in memory (`functools.lru_cache`) for the session.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch.utils.data import TensorDataset

from .registry import register_dataset

BURGERS_GRID = 1024          # the solver's grid; datasets are subsampled from it (the paper solves at 8192)
GRF_MODES = 64               # Fourier modes of the random initial conditions (amplitudes decay as k^-2)
DARCY_MODES = 32             # cosine modes per axis of the Darcy random field


@dataclass
class PDEData:
    """A generated operator-learning task: `train`/`test` are TensorDatasets of (input a, solution u), both
    `(n, 1, *grid)`; `resolution` is the number of points per axis."""

    name: str
    train: TensorDataset
    test: TensorDataset
    resolution: int

    def __repr__(self) -> str:
        return f"PDEData({self.name!r}, train={len(self.train)}, test={len(self.test)}, resolution={self.resolution})"


def _check_sizes(n_train: int, n_test: int, resolution: int, minimum: int) -> None:
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train} and {n_test}")
    if resolution < minimum:
        raise ValueError(f"resolution must be >= {minimum}, got {resolution}")


# ----------------------------------------------------------------------------- Burgers


def burgers_initial(n: int, grid: int = BURGERS_GRID, seed: int = 0, modes: int = GRF_MODES) -> np.ndarray:
    """`n` draws of N(0, 625 (-Delta + 25 I)^-2) on [0, 1) periodic, sampled at `grid` points: (n, grid).

    On the orthonormal basis sqrt(2) cos(2 pi k x), sqrt(2) sin(2 pi k x) the covariance is diagonal with standard
    deviation 25 / ((2 pi k)^2 + 25) (Karhunen-Loeve expansion, Sec. 5.1); modes 1..`modes` are drawn and the mean
    (k = 0), which Burgers conserves and which would dominate the norm of the solution, is zero.
    """
    if modes >= grid // 2:
        raise ValueError(f"grid must exceed 2 * modes = {2 * modes}, got {grid}")
    k = np.arange(1, modes + 1)
    std = 25.0 / ((2 * np.pi * k) ** 2 + 25.0)
    coef = np.random.default_rng(seed).standard_normal((n, 2, modes)) * std * np.sqrt(2.0)   # cos, sin amplitudes
    spectrum = np.zeros((n, grid // 2 + 1), dtype=complex)
    spectrum[:, 1:modes + 1] = grid * (coef[:, 0] - 1j * coef[:, 1]) / 2       # irfft's scaling of a cos - i sin
    return np.fft.irfft(spectrum, n=grid, axis=-1)


def solve_burgers(u0: np.ndarray, t: float = 1.0, nu: float = 0.1, dt: float = 1 / 128) -> np.ndarray:
    """u(., t) of `u_t + (u^2 / 2)_x = nu u_xx` on [0, 1) periodic from `u0` (..., N), pseudo-spectrally.

    With v = exp(nu k^2 s) u_hat (integrating factor) the diffusion is exact and v_s = -exp(nu k^2 s) (i k / 2)
    (u^2)_hat is advanced by Runge-Kutta 4; the product u^2 is de-aliased by the 2/3 rule.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    n = u0.shape[-1]
    if n < 8 or n % 2:
        raise ValueError(f"the grid must be even and >= 8, got {n} points")
    steps = max(1, int(np.ceil(t / dt)))
    h = t / steps
    k = 2 * np.pi * np.fft.rfftfreq(n, d=1.0 / n)                   # wavenumbers 2 pi m, m = 0..N/2
    keep = np.arange(k.size) <= n // 3                              # 2/3 rule
    half = np.exp(-nu * k ** 2 * h / 2)                             # exp(-nu k^2 h/2): the diffusion over half a step

    def nonlinear(u_hat):                                           # -(u^2 / 2)_x in Fourier space, de-aliased
        u = np.fft.irfft(u_hat * keep, n=n, axis=-1)
        return -0.5j * k * np.fft.rfft(u * u, axis=-1) * keep

    u_hat = np.fft.rfft(u0, axis=-1)
    for _ in range(steps):                                          # RK4 on the integrating-factor form
        a = nonlinear(u_hat)
        b = nonlinear(half * (u_hat + h / 2 * a))
        c = nonlinear(half * u_hat + h / 2 * b)
        d = nonlinear(half ** 2 * u_hat + h * half * c)
        u_hat = half ** 2 * (u_hat + h / 6 * a) + h / 3 * half * (b + c) + h / 6 * d
    return np.fft.irfft(u_hat, n=n, axis=-1)


@functools.lru_cache(maxsize=8)
def _burgers_pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    u0 = burgers_initial(n, BURGERS_GRID, seed)
    return u0, solve_burgers(u0)


def _subsample(u: np.ndarray, resolution: int, grid: int) -> torch.Tensor:
    if grid % resolution:
        raise ValueError(f"resolution must divide the solver's grid of {grid} points, got {resolution}")
    return torch.from_numpy(u[:, None, ::grid // resolution]).float()      # (n, 1, resolution)


def load_burgers(n_train: int = 1000, n_test: int = 200, resolution: int = 256, seed: int = 0) -> PDEData:
    """Burgers pairs (u(., 0), u(., 1)) at `resolution` points x_j = j / resolution (a divisor of 1024). The test
    set comes first in the seeded stream, so it is the same whatever `n_train` is."""
    _check_sizes(n_train, n_test, resolution, 8)
    u0, u1 = _burgers_pairs(n_train + n_test, seed)
    a, u = _subsample(u0, resolution, BURGERS_GRID), _subsample(u1, resolution, BURGERS_GRID)
    return _split("burgers", a, u, n_test, resolution)


def _split(name: str, a: torch.Tensor, u: torch.Tensor, n_test: int, resolution: int) -> PDEData:
    """The first `n_test` pairs are the test set, the rest the training set."""
    return PDEData(name, TensorDataset(a[n_test:], u[n_test:]), TensorDataset(a[:n_test], u[:n_test]), resolution)


# ----------------------------------------------------------------------------- Darcy


def darcy_coefficient(n: int, resolution: int, seed: int = 0, modes: int = DARCY_MODES) -> np.ndarray:
    """`n` coefficient fields a = psi(g) on the `resolution` x `resolution` grid x_i = i / (resolution - 1): g ~
    N(0, (-Delta + 9 I)^-2) with Neumann boundary (cosine series, mean zero), psi = 12 where g >= 0, 3 below."""
    k = np.arange(modes)
    k1, k2 = np.meshgrid(k, k, indexing="ij")
    std = (np.pi ** 2 * (k1 ** 2 + k2 ** 2) + 9.0) ** -1.0
    std[0, 0] = 0.0
    coef = np.random.default_rng(seed).standard_normal((n, modes, modes)) * std
    basis = np.cos(np.pi * np.linspace(0, 1, resolution)[:, None] * k)       # (resolution, modes)
    g = np.einsum("ik,nkl,jl->nij", basis, coef, basis)
    return np.where(g >= 0, 12.0, 3.0)


def solve_darcy(a: np.ndarray, f: float | np.ndarray = 1.0) -> np.ndarray:
    """u on the s x s grid x_i = i / (s - 1) of `-div(a grad u) = f`, u = 0 on the boundary: the five-point
    scheme with face coefficients a_{i+1/2, j} = (a_{i, j} + a_{i+1, j}) / 2, second order for smooth a.

    `a` and `f` (a scalar or an array) are nodal values (s, s); returns (s, s) with zeros on the boundary.
    """
    a = np.asarray(a, dtype=np.float64)
    s = a.shape[0]
    if a.shape != (s, s) or s < 3:
        raise ValueError(f"a must be a square grid of at least 3 x 3 nodes, got shape {a.shape}")
    h, m = 1.0 / (s - 1), s - 2
    f = np.broadcast_to(np.asarray(f, dtype=np.float64), (s, s))
    east, west = (a[1:-1, 1:-1] + a[2:, 1:-1]) / 2, (a[1:-1, 1:-1] + a[:-2, 1:-1]) / 2     # faces i +- 1/2
    north, south = (a[1:-1, 1:-1] + a[1:-1, 2:]) / 2, (a[1:-1, 1:-1] + a[1:-1, :-2]) / 2   # faces j +- 1/2
    index = np.arange(m * m).reshape(m, m)
    rows, cols, vals = [index.ravel()], [index.ravel()], [(east + west + north + south).ravel()]
    for face, di, dj in ((east, 1, 0), (west, -1, 0), (north, 0, 1), (south, 0, -1)):
        inside = np.zeros((m, m), dtype=bool)
        inside[max(0, -di):m - max(0, di), max(0, -dj):m - max(0, dj)] = True            # neighbour is interior
        rows.append(index[inside])
        cols.append(np.roll(index, (-di, -dj), axis=(0, 1))[inside])
        vals.append(-face[inside])
    matrix = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                     shape=(m * m, m * m)) / h ** 2
    u = np.zeros((s, s))
    u[1:-1, 1:-1] = scipy.sparse.linalg.spsolve(matrix.tocsc(), f[1:-1, 1:-1].ravel()).reshape(m, m)
    return u


@functools.lru_cache(maxsize=4)
def _darcy_pairs(n: int, resolution: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a = darcy_coefficient(n, resolution, seed)
    return a, np.stack([solve_darcy(x) for x in a])


def load_darcy(n_train: int = 1000, n_test: int = 100, resolution: int = 64, seed: int = 0) -> PDEData:
    """Darcy pairs (a, u) on the `resolution` x `resolution` grid of the unit square, f = 1."""
    _check_sizes(n_train, n_test, resolution, 5)
    a, u = (torch.from_numpy(t[:, None]).float() for t in _darcy_pairs(n_train + n_test, resolution, seed))
    return _split("darcy", a, u, n_test, resolution)


register_dataset("burgers", load_burgers, kind="pde",
                 description="1-D viscous Burgers, u(.,0) -> u(.,1), nu=0.1, pseudo-spectral solver (FNO Sec. 5.1)")
register_dataset("darcy", load_darcy, kind="pde",
                 description="2-D Darcy flow, a -> u, thresholded random coefficient, finite differences (FNO 5.2)")
