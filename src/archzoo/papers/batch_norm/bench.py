"""`archzoo bench norms`: BatchNorm written out (Algorithm 1) beside PyTorch's fused `nn.BatchNorm2d`."""

from torch import nn

from ...engine.bench import register_norm_bench
from .batch_norm import BatchNorm2d

register_norm_bench("BatchNorm2d (batch_norm)", BatchNorm2d, "nn.BatchNorm2d", nn.BatchNorm2d)
