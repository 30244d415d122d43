r"""Generated radar: rain cells advected by a wind and growing and decaying, the stand-in for MetNet's MRMS radar.

MetNet (Sønderby et al. 2020, arXiv:2003.12140, Sec. 2) forecasts the precipitation rate measured by radar. Its two
sources of difficulty are motion (rain is carried by the wind, which optical-flow extrapolation captures) and the
life cycle of rain (cells grow and decay, which extrapolation cannot predict, Sec. 1 and Sec. 6). Our sequences have
both, in closed form, on a periodic `size` x `size` grid, one frame per time step:

    R(x, t) = \sum_c A_c(t) exp(-|x - p_c - v t|^2 / (2 sigma_c^2))        (distances on the torus)

with one wind v (pixels per frame) per sequence, and each cell's rate A_c(t) = peak_c sin(pi (t - b_c) / tau_c)
while it lives (b_c <= t <= b_c + tau_c) and 0 otherwise: a cell is born, grows for tau_c / 2 frames, decays for as
long and dies. Birth times are spread so that, at any frame, cells are seen at every stage of their lives; a
cell's stage and lifetime are visible in the input frames (its rate rises or falls), so its future is predictable
in part, from data, but not by extrapolation. With `growth=False` every cell keeps its peak rate at every frame:
pure advection, the control on which extrapolation is exact up to interpolation.

`load_radar` registers as the dataset "radar": `train` / `test` are `ForecastDataset`s of (input frames, lead time,
target frame), every (sequence, lead time) pair once, for MetNet's lead-time conditioned training (Sec. 3.1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...data import register_dataset


@dataclass
class Cells:
    """The rain cells of one sequence: arrays of shape (n,) each; `position` (n, 2) in pixels (row, column) at t=0."""

    position: np.ndarray
    sigma: np.ndarray
    peak: np.ndarray
    birth: np.ndarray
    lifetime: np.ndarray


def cell_rates(cells: Cells, t: np.ndarray, growth: bool = True) -> np.ndarray:
    """A_c(t), (n_cells, n_times): peak_c sin(pi (t - b_c) / tau_c) while the cell lives, else 0; the peak at
    every time when `growth` is False."""
    if not growth:
        return np.repeat(cells.peak[:, None], len(t), axis=1)
    age = (t[None, :] - cells.birth[:, None]) / cells.lifetime[:, None]     # fraction of its life, (n, T)
    return np.where((age >= 0) & (age <= 1), cells.peak[:, None] * np.sin(np.pi * np.clip(age, 0, 1)), 0.0)


def render(cells: Cells, wind: tuple[float, float], frames: int, size: int, growth: bool = True) -> np.ndarray:
    """The rain rate R(x, t) of `cells` carried by `wind` (pixels per frame, (row, column)): (frames, size, size)."""
    t = np.arange(frames, dtype=np.float64)
    centre = cells.position[:, None, :] + t[None, :, None] * np.asarray(wind, dtype=np.float64)   # (n, T, 2)
    grid = np.arange(size, dtype=np.float64)
    d = grid[None, None, :, None] - centre[..., None, :]                    # (n, T, size, 2): offset per axis
    d = (d + size / 2) % size - size / 2                                    # nearest periodic image
    sq = d[..., 0][..., :, None] ** 2 + d[..., 1][..., None, :] ** 2        # (n, T, size, size)
    blobs = np.exp(-sq / (2 * cells.sigma[:, None, None, None] ** 2))
    return np.einsum("nt,nthw->thw", cell_rates(cells, t, growth), blobs)


def draw_cells(rng: np.random.Generator, n: int, size: int, frames: int, sigma=(2.0, 4.0), peak=(2.0, 10.0),
               lifetime=(8.0, 16.0)) -> Cells:
    """`n` cells with uniform positions, widths, peak rates and lifetimes; births uniform in [-tau, frames), so
    that every frame sees cells at every stage of their lives."""
    tau = rng.uniform(*lifetime, n)
    return Cells(position=rng.uniform(0, size, (n, 2)), sigma=rng.uniform(*sigma, n), peak=rng.uniform(*peak, n),
                 birth=rng.uniform(-tau, frames), lifetime=tau)


def radar_sequences(n: int, frames: int = 12, size: int = 32, cells: tuple[int, int] = (6, 12),
                    speed: tuple[float, float] = (0.25, 1.0), growth: bool = True, seed: int = 0) -> np.ndarray:
    """`n` sequences of rain rates (mm/h), (n, frames, size, size) float32: a number of cells uniform in `cells`
    (both included), a wind of uniform direction and a speed uniform in `speed` (pixels per frame)."""
    if n < 1 or frames < 2 or size < 4:
        raise ValueError(f"need n >= 1, frames >= 2 and size >= 4, got n={n}, frames={frames}, size={size}")
    rng = np.random.default_rng(seed)
    out = np.empty((n, frames, size, size), dtype=np.float32)
    for i in range(n):
        angle, v = rng.uniform(0, 2 * np.pi), rng.uniform(*speed)
        wind = (v * np.sin(angle), v * np.cos(angle))
        out[i] = render(draw_cells(rng, int(rng.integers(cells[0], cells[1] + 1)), size, frames), wind, frames,
                        size, growth)
    return out


class ForecastDataset(Dataset):
    """Pairs of (the first `context` frames, a lead time, the frame `lead + 1` steps after the last input) of every
    sequence: item i is sequence i // L at lead time i % L (L = `lead_times`), as
    (x (context, H, W) float32, lead int64 scalar, y (H, W) float32)."""

    def __init__(self, frames: Tensor, context: int, lead_times: int):
        if frames.dim() != 4 or frames.shape[1] < context + lead_times:
            raise ValueError(f"frames: expected (N, T >= context + lead_times = {context + lead_times}, H, W), got "
                             f"{tuple(frames.shape)}")
        self.frames, self.context, self.lead_times = frames, context, lead_times

    def __len__(self) -> int:
        return len(self.frames) * self.lead_times

    def __getitem__(self, i: int):
        seq, lead = divmod(int(i), self.lead_times)
        x = self.frames[seq, :self.context]
        return x, torch.tensor(lead), self.frames[seq, self.context + lead]

    def inputs(self) -> Tensor:
        """Every sequence's input frames, (N, context, H, W)."""
        return self.frames[:, :self.context]

    def targets(self) -> Tensor:
        """Every sequence's target frames, lead time by lead time, (N, lead_times, H, W)."""
        return self.frames[:, self.context:self.context + self.lead_times]


@dataclass
class RadarData:
    """Generated radar: `train`, `val` (for choosing decision thresholds) and `test` ForecastDatasets over disjoint
    sequences (different seeds)."""

    name: str
    train: ForecastDataset
    val: ForecastDataset
    test: ForecastDataset
    context: int
    lead_times: int
    size: int
    growth: bool

    def __repr__(self) -> str:
        return (f"RadarData({self.name!r}, train={len(self.train.frames)} sequences, val={len(self.val.frames)}, "
                f"test={len(self.test.frames)}, "
                f"context={self.context}, lead_times={self.lead_times}, size={self.size}, growth={self.growth})")


@functools.lru_cache(maxsize=8)
def _sequences(n: int, frames: int, size: int, growth: bool, seed: int) -> Tensor:
    return torch.from_numpy(radar_sequences(n, frames, size, growth=growth, seed=seed))


def load_radar(n_train: int = 512, n_val: int = 128, n_test: int = 128, context: int = 4, lead_times: int = 8,
               size: int = 32, growth: bool = True, seed: int = 0) -> RadarData:
    """`n_train` + `n_val` + `n_test` sequences of `context` + `lead_times` frames, each split drawn from its own
    seed (held out from the others)."""
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"n_train, n_val and n_test must be >= 1, got {n_train}, {n_val} and {n_test}")
    frames = context + lead_times
    train, val, test = (ForecastDataset(_sequences(n, frames, size, growth, 3 * seed + i), context, lead_times)
                        for i, n in enumerate((n_train, n_val, n_test)))
    return RadarData("radar", train, val, test, context, lead_times, size, growth)


register_dataset("radar", load_radar, kind="forecast",
                 description="generated radar: rain cells advected by a wind, growing and decaying (metnet)")
