"""`archzoo bench norms`: local response normalization beside PyTorch's fused `nn.LocalResponseNorm`."""

from torch import nn

from ...engine.bench import register_norm_bench
from .response_normalization import LocalResponseNorm

register_norm_bench("LocalResponseNorm n=5 (alexnet)", lambda c: LocalResponseNorm(), "nn.LocalResponseNorm",
                    lambda c: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
