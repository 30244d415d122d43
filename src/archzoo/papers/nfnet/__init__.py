"""NFNets (Brock, De, Smith & Simonyan 2021, arXiv:2102.06171): "High-Performance Large-Scale Image Recognition Without
Normalization", with the NF-ResNet machinery of Brock, De & Smith 2021 (arXiv:2101.08692): Scaled Weight
Standardization, the alpha/beta residual bookkeeping, signal propagation plots and adaptive gradient clipping."""

from . import agc, bench, blocks, claims, models, scaled_ws, spp  # noqa: F401  (presets, layers, claims, bench)
from .agc import AdaptiveGradClip, adaptive_grad_clip_, unitwise_norm
from .blocks import NFBlock, SqueezeExcite, StochasticDepth
from .models import NFNet, nfnet_f0, nfnet_f1, nfnet_f2, nfnet_f3, nfnet_f4, nfnet_f5, nfnet_f6, nfnet_small
from .scaled_ws import GAMMA, ScaledActivation, ScaledStdConv2d
from .spp import channel_statistics, plot_signal_propagation, signal_propagation

__all__ = ["AdaptiveGradClip", "GAMMA", "NFBlock", "NFNet", "ScaledActivation", "ScaledStdConv2d", "SqueezeExcite",
           "StochasticDepth", "adaptive_grad_clip_", "channel_statistics", "nfnet_f0", "nfnet_f1", "nfnet_f2",
           "nfnet_f3", "nfnet_f4", "nfnet_f5", "nfnet_f6", "nfnet_small", "plot_signal_propagation",
           "signal_propagation", "unitwise_norm"]
