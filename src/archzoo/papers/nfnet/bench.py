"""`archzoo bench norms`: the Scaled WS convolution beside the plain convolution it replaces."""

from torch import nn

from ...engine.bench import register_norm_bench
from .scaled_ws import ScaledStdConv2d

register_norm_bench("ScaledStdConv2d 3x3 (nfnet)", lambda c: ScaledStdConv2d(c, c, 3, padding=1), "nn.Conv2d 3x3",
                    lambda c: nn.Conv2d(c, c, 3, padding=1))
