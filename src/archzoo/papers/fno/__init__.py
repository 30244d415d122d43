"""Fourier Neural Operator for Parametric Partial Differential Equations (Li et al. 2020, arXiv:2010.08895).

The spectral convolution (`SpectralConv1d`, `SpectralConv2d`; Eq. 4-5), the Fourier layer (`FourierLayer`, Eq. 2),
`FNO` in one and two dimensions with the paper's presets (`fno1d_burgers`, `fno2d_darcy`), the CNN baseline of the
claims, the claims on Burgers (data from `archzoo.data`: "burgers", "darcy") and the benchmark entry. See README.md
beside this file.
"""

from . import bench, claims, models, spectral  # noqa: F401  (registers layers, presets, claims, bench)
from .models import FNO, FourierLayer, fno1d_burgers, fno2d_darcy, fno_cnn_baseline, grid_coordinates, local_conv
from .spectral import SpectralConv1d, SpectralConv2d

__all__ = ["SpectralConv1d", "SpectralConv2d", "FourierLayer", "FNO", "grid_coordinates", "local_conv",
           "fno1d_burgers", "fno2d_darcy", "fno_cnn_baseline"]
