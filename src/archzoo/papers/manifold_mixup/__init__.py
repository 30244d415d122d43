"""Manifold Mixup (Verma et al. 2018, arXiv:1806.05236): train on interpolations of hidden states at a random
layer, with the interpolated targets. `ManifoldMixup` is a Trainer step that does it for any registered
classifier through forward hooks (`input_mixup` is its layer-0 special case, the baseline); `mixup_mlp` is the
bottleneck MLP of the flattening experiment. See README.md beside this file."""

from . import claims, mixup, models  # noqa: F401  (registers the step, the preset and the claims)
from .mixup import (
    INPUT,
    ManifoldMixup,
    default_mixup_layers,
    input_mixup,
    mix,
    mixed_forward,
    mixing_at,
    mixup_cross_entropy,
)
from .models import BottleneckMLP, mixup_mlp

__all__ = ["INPUT", "BottleneckMLP", "ManifoldMixup", "default_mixup_layers", "input_mixup", "mix", "mixed_forward",
           "mixing_at", "mixup_cross_entropy", "mixup_mlp"]
