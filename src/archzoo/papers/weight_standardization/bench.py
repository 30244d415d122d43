"""`archzoo bench norms`: the WS convolution beside a plain convolution, and BCN beside BN followed by GN."""

from torch import nn

from ...engine.bench import register_norm_bench
from .batch_channel_norm import BatchChannelNorm
from .weight_standardization import WSConv2d

register_norm_bench("WSConv2d 3x3 (weight_standardization)", lambda c: WSConv2d(c, c, 3, padding=1, bias=False),
                    "nn.Conv2d 3x3", lambda c: nn.Conv2d(c, c, 3, padding=1, bias=False))
register_norm_bench("BatchChannelNorm (weight_standardization)", BatchChannelNorm, "nn.BatchNorm2d + nn.GroupNorm",
                    lambda c: nn.Sequential(nn.BatchNorm2d(c), nn.GroupNorm(32, c)))
