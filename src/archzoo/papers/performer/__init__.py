"""Performer: Rethinking Attention with Performers (Choromanski et al. 2020, arXiv:2009.14794).

FAVOR+ attention (`PerformerAttention`, registered as the attention "performer", and "performer_relu"):
positive random features for the softmax kernel (Lemma 1), block-orthogonal projections (Sec. 2.4), feature
redrawing, the causal prefix-sum form, the generalized ReLU kernel and the trigonometric features FAVOR+
replaces; a small sequence preset (`performer_small`), the claims and the benchmark entry. See README.md
beside this file.
"""

from . import attention, bench, claims, features, models  # noqa: F401  (registers attentions, preset, bench, claims)
from .attention import PerformerAttention, PerformerReLUAttention, favor_bidirectional, favor_unidirectional
from .features import (
    draw_projection,
    hyperbolic_features,
    positive_features,
    random_features,
    relu_features,
    softmax_kernel_mse,
    trigonometric_features,
)
from .models import performer_small

__all__ = ["PerformerAttention", "PerformerReLUAttention", "favor_bidirectional", "favor_unidirectional",
           "draw_projection", "positive_features", "hyperbolic_features", "trigonometric_features", "relu_features",
           "random_features", "softmax_kernel_mse", "performer_small"]
