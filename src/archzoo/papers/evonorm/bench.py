"""`archzoo bench norms`: each EvoNorm layer beside the normalization-activation pair it replaces."""

from torch import nn

from ...engine.bench import register_norm_bench
from .evonorm import EvoNormB0, EvoNormS0

register_norm_bench("EvoNormB0 (evonorm)", EvoNormB0, "nn.BatchNorm2d + ReLU",
                    lambda c: nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()))
register_norm_bench("EvoNormS0 (evonorm)", EvoNormS0, "nn.GroupNorm + SiLU",
                    lambda c: nn.Sequential(nn.GroupNorm(32, c), nn.SiLU()))
