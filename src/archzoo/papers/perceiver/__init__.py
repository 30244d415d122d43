"""Perceiver: General Perception with Iterative Attention (Jaegle et al. 2021, arXiv:2103.03206).

Fourier position features (`fourier.py`), the cross-attend and the Perceiver classifier with weight sharing
(`perceiver.py`), generated audio-like series and point clouds (`modalities.py`), the preset
`perceiver_imagenet` and three claims. See README.md beside this file.
"""

from . import bench, claims  # noqa: F401  (registers the claims and the bench batch limit)
from .fourier import FourierPositionEncoding, fourier_features, frequency_bands, grid_positions
from .modalities import point_clouds, series
from .perceiver import CrossAttend, Perceiver

__all__ = ["FourierPositionEncoding", "fourier_features", "frequency_bands", "grid_positions", "CrossAttend",
           "Perceiver", "series", "point_clouds"]
