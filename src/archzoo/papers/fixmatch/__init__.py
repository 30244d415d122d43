"""FixMatch (Sohn et al. 2020, arXiv:2001.07685): semi-supervised learning from a few labels by pseudo-labelling
confident predictions on weakly augmented images and training on strongly augmented ones. The augmentations
(`augment`: flip-and-shift, RandAugment with the ops of Table 12, Cutout) on image batches, the loss of Eq. 2-4
and the Trainer step `FixMatch` for any classifier (the EMA model is the engine's `EMA` hook), the paper's
WRN-28-2 (`wrn28_2`) and the claim at 4 labels per class. See README.md beside this file."""

from . import augment, claims, fixmatch, wideresnet  # noqa: F401  (registers the preset and the claim)
from .augment import RANDAUGMENT_OPS, cutout, rand_augment, strong_augment, weak_augment
from .fixmatch import FixMatch, cosine_decay, fixmatch_loss, pseudo_labels
from .wideresnet import WideResNet, wrn28_2

__all__ = ["RANDAUGMENT_OPS", "FixMatch", "WideResNet", "cosine_decay", "cutout", "fixmatch_loss", "pseudo_labels",
           "rand_augment", "strong_augment", "weak_augment", "wrn28_2"]
