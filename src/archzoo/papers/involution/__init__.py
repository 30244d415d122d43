"""Involution: Inverting the Inherence of Convolution for Visual Recognition (Li et al. 2021, arXiv:2103.06255).

The `Involution` operator (Eq. 4-6), the RedNet block and networks (`RedNetBottleneck`, `RedNet`, presets
rednet26 ... rednet152 of Table 2), the small `CifarRedNet` with its convolutional twin, and the claim that RedNet
matches a ResNet of the same depth with fewer parameters and FLOPs. See README.md beside this file.
"""

from . import claims  # noqa: F401  (registers the claim)
from .flops import count_macs
from .involution import Involution
from .rednet import CifarRedNet, RedNet, RedNetBottleneck, rednet26, rednet38, rednet50, rednet101, rednet152

__all__ = ["Involution", "RedNetBottleneck", "RedNet", "CifarRedNet", "count_macs", "rednet26", "rednet38",
           "rednet50", "rednet101", "rednet152"]
