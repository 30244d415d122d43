"""Group Normalization (Wu & He 2018, arXiv:1803.08494): normalise each sample over groups of channels, so that
the statistics never depend on the batch. The layer `GroupNorm`, the `group_norm` norm-layer helper, the
`resnet20_gn` preset and the batch-size claim (Fig. 1). See README.md beside this file."""

from . import bench, claims, group_norm, models  # noqa: F401  (registers layer, preset, claim, bench pair)
from .group_norm import GroupNorm
from .models import cifar_resnet_gn, resnet20_gn

__all__ = ["GroupNorm", "cifar_resnet_gn", "resnet20_gn"]
