"""Weight Standardization and Batch-Channel Normalization (Qiao, Wang, Liu, Shen & Yuille 2019, arXiv:1903.10520):
"Micro-Batch Training with Batch-Channel Normalization and Weight Standardization". The layers `WSConv2d`
(Sec. 3, Eq. 5-6) and `BatchChannelNorm` (Sec. 4, Algorithm 1), the `resnet20_gn_ws` and `resnet20_bcn_ws` presets
and the micro-batch claim. See README.md beside this file."""

from . import batch_channel_norm, bench, claims, models, weight_standardization  # noqa: F401  (+ bench pairs)
from .batch_channel_norm import BatchChannelNorm
from .models import cifar_resnet_bcn_ws, cifar_resnet_gn_ws, resnet20_bcn_ws, resnet20_gn_ws
from .weight_standardization import WSConv2d, standardize_weight

__all__ = ["BatchChannelNorm", "WSConv2d", "cifar_resnet_bcn_ws", "cifar_resnet_gn_ws", "resnet20_bcn_ws",
           "resnet20_gn_ws", "standardize_weight"]
