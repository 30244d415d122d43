r"""The baselines of MetNet's comparison (Sec. 5): persistence and optical-flow extrapolation.

- Persistence: the last observed frame, at every lead time.
- Extrapolation (Lagrangian persistence): the motion between the last two frames is estimated and the last frame is
  carried forward along it, unchanged in intensity. MetNet compares against an optical-flow method that estimates a
  displacement field; our generated wind is one vector per sequence, so a global displacement is the right model
  and this baseline is exact for the advection part. We estimate it by Fourier cross-correlation: the cross-power
  spectrum F(current) conj(F(previous)) of two frames shifted by d is |F|^2 exp(-2 pi i k.d / N), whose inverse
  transform peaks at d, refined to 1/100 pixel by an upsampled DFT around the peak
  (`skimage.registration.phase_cross_correlation`; without the phase normalisation of Kuglin & Hines 1975, which
  on smooth rain fields amplifies the noise of the vanishing high frequencies: 0.02 instead of 0.005 pixel errors).
  Frame k steps ahead: the last frame shifted by (k + 1) d, by a Fourier shift (exact for a periodic field).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from skimage.registration import phase_cross_correlation
from torch import Tensor

from ...core.checks import check_shape


def persistence(frames: Tensor, lead_times: int) -> Tensor:
    """(N, T, H, W) input frames -> (N, lead_times, H, W): the last frame at every lead time."""
    check_shape(frames, "N T H W", name="frames")
    return frames[:, -1:].expand(-1, lead_times, -1, -1).clone()


def displacement(previous: np.ndarray, current: np.ndarray, upsample: int = 100) -> np.ndarray:
    """The shift d (rows, columns, in pixels) with current(x) ~ previous(x - d), by Fourier cross-correlation."""
    if not (previous.any() and current.any()):
        return np.zeros(2)   # no rain in one of the frames: nothing to track
    shift, _, _ = phase_cross_correlation(current, previous, upsample_factor=upsample, normalization=None)
    return shift         # skimage: the shift that moves its second image (`previous`) onto its first


def advect(frame: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """`frame` moved by `shift` pixels on the torus, by the Fourier shift theorem (subpixel, mass preserving)."""
    moved = np.fft.ifftn(ndimage.fourier_shift(np.fft.fftn(frame), shift)).real
    return np.maximum(moved, 0.0)        # the band-limited interpolation rings slightly below zero


def extrapolation(frames: Tensor, lead_times: int) -> Tensor:
    """(N, T >= 2, H, W) input frames -> (N, lead_times, H, W): the last frame advected by the displacement between
    the last two frames, (k + 1) times for lead time k (k = 0 is the next frame)."""
    check_shape(frames, "N T H W", name="frames")
    if frames.shape[1] < 2:
        raise ValueError(f"extrapolation needs at least 2 input frames, got {frames.shape[1]}")
    x = frames.double().numpy()
    out = np.empty((len(x), lead_times, *x.shape[2:]))
    for i, seq in enumerate(x):
        d = displacement(seq[-2], seq[-1])
        for k in range(lead_times):
            out[i, k] = advect(seq[-1], (k + 1) * d)
    return torch.from_numpy(out).to(frames.dtype)
