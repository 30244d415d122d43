"""`archzoo bench norms`: GroupNorm written out (Eq. 1-3) beside PyTorch's fused `nn.GroupNorm`."""

from torch import nn

from ...engine.bench import register_norm_bench
from .group_norm import GroupNorm

register_norm_bench("GroupNorm G=32 (group_norm)", lambda c: GroupNorm(32, c), "nn.GroupNorm",
                    lambda c: nn.GroupNorm(32, c))
