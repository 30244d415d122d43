"""The signals SIREN fits, sampled on coordinate grids in [-1, 1] (Sitzmann et al. 2020, Sec. 4.1).

- an image: scikit-image's `camera`, resized, grey values scaled to [-1, 1] as in the authors' code;
- its gradients and Laplacian by finite differences (Sobel, 5-point stencil), in units of the coordinates, the
  targets of the Poisson experiments (Fig. 3);
- an audio clip: a generated chirp with harmonics (the paper fits recorded music; nothing is downloaded here);
- PSNR, the paper's measure of fit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from ...data import load_image
from ..perceiver.fourier import grid_positions


def coordinate_grid(*shape: int) -> Tensor:
    """The coordinates of a grid of `shape` (H, W or T), each axis spanning [-1, 1], flattened: (prod(shape), d)."""
    return rearrange(grid_positions(tuple(shape)), "... d -> (...) d")


def image_signal(side: int, name: str = "camera") -> tuple[Tensor, Tensor]:
    """A grey scikit-image sample of `side` x `side` pixels: coordinates (side^2, 2) and values in [-1, 1]
    (side^2, 1), in row-major order (coordinate 0 is the row)."""
    img = load_image(name, size=side)                                   # (C, side, side) in [0, 1]
    if img.shape[0] != 1:
        raise ValueError(f"image_signal: expected a grey image, {name!r} has {img.shape[0]} channels")
    return coordinate_grid(side, side), rearrange(img * 2 - 1, "c h w -> (h w) c")


def image_derivatives(values: Tensor, side: int) -> tuple[Tensor, Tensor]:
    """The gradient (side^2, 2) and Laplacian (side^2, 1) of an image given as values (side^2, 1), by finite
    differences (scipy.ndimage: Sobel, 8x the central difference; the 5-point Laplace stencil), converted to
    derivatives with respect to the coordinates, whose grid spacing is h = 2 / (side - 1)."""
    from scipy import ndimage

    img = values.reshape(side, side).double().numpy()
    h = 2.0 / (side - 1)
    grad = np.stack([ndimage.sobel(img, axis=a) / (8 * h) for a in (0, 1)], axis=-1)   # (side, side, 2)
    lap = ndimage.laplace(img) / h**2                                                  # (side, side)
    return (torch.from_numpy(grad).float().reshape(-1, 2), torch.from_numpy(lap).float().reshape(-1, 1))


def chirp_signal(samples: int, f0: float = 10.0, f1: float = 200.0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A generated audio clip on t in [-1, 1]: a linear chirp whose frequency sweeps from `f0` to `f1` cycles per
    unit of t, with its 2nd and 3rd harmonics and a little noise, peak-normalised to [-1, 1]. Returns
    coordinates (samples, 1) and amplitudes (samples, 1); `samples` > 12 f1 keeps the 3rd harmonic below Nyquist."""
    t = torch.linspace(-1.0, 1.0, samples, dtype=torch.float64)
    phase = 2 * math.pi * (f0 * (t + 1) + (f1 - f0) / 4 * (t + 1) ** 2)   # frequency f0 + (f1 - f0)(t + 1)/2
    noise = torch.randn(samples, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    a = torch.sin(phase) + 0.5 * torch.sin(2 * phase) + 0.25 * torch.sin(3 * phase) + 0.02 * noise
    return t.float()[:, None], (a / a.abs().max()).float()[:, None]


def psnr(prediction: Tensor, target: Tensor, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(range^2 / MSE); signals in [-1, 1] have range 2."""
    mse = float(torch.mean((prediction.detach().double() - target.double()) ** 2))
    return 10.0 * math.log10(data_range**2 / max(mse, 1e-30))
