"""Axial-DeepLab: Stand-Alone Axial-Attention for Panoptic Segmentation (Wang et al. 2020, arXiv:2003.07853).

Position-sensitive axial-attention (`AxialAttention`), the axial-attention block and the stand-alone Axial-ResNets,
the panoptic head and its grouping post-process, and the claims. The shape scenes live in `archzoo.data.scenes`,
panoptic quality in `archzoo.engine.metrics`. See README.md beside this file.
"""

from . import axial_attention, claims, models, panoptic  # noqa: F401  (registers presets, layers and claims)
from .axial_attention import AxialAttention, relative_index
from .models import AxialBlock, AxialResNet, ConvBlock
from .panoptic import AxialDeepLab, find_centers, panoptic_inference, panoptic_loss, panoptic_targets

__all__ = ["AxialAttention", "AxialBlock", "AxialResNet", "ConvBlock", "AxialDeepLab", "find_centers",
           "panoptic_inference", "panoptic_loss", "panoptic_targets", "relative_index"]
