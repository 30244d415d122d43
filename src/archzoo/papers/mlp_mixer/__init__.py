"""MLP-Mixer: An all-MLP Architecture for Vision (Tolstikhin et al. 2021, arXiv:2105.01601).

The Mixer layer (token-mixing and channel-mixing MLPs, Eq. 1), the `MlpMixer` classifier, the presets
mixer_s32 ... mixer_h14 (Table 1), and the claims: on par with a ViT of similar size on small data, and higher
throughput than that ViT. See README.md beside this file.
"""

from . import claims  # noqa: F401  (registers the claims)
from .mixing import MixerLayer
from .models import MlpMixer, mixer_b16, mixer_b32, mixer_h14, mixer_l16, mixer_l32, mixer_s16, mixer_s32

__all__ = ["MixerLayer", "MlpMixer", "mixer_b16", "mixer_b32", "mixer_h14", "mixer_l16", "mixer_l32", "mixer_s16",
           "mixer_s32"]
