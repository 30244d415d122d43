"""`archzoo bench norms`: BiT's weight-standardized convolution (as released) beside the plain convolution."""

from torch import nn

from ...engine.bench import register_norm_bench
from .std_conv import StdConv2d

register_norm_bench("StdConv2d 3x3 (bit)", lambda c: StdConv2d(c, c, 3, padding=1, bias=False), "nn.Conv2d 3x3",
                    lambda c: nn.Conv2d(c, c, 3, padding=1, bias=False))
