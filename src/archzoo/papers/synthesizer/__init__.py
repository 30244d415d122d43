"""Synthesizer: Rethinking Self-Attention in Transformer Models (Tay, Bahri, Metzler, Juan, Zhao, Zheng 2020,
arXiv:2005.00743).

The synthesizing functions (`DenseSynthesizer`, `RandomSynthesizer`, `FactorizedDenseSynthesizer`,
`FactorizedRandomSynthesizer`), `SynthesizerAttention` (registered as the attention "synthesizer", with
mixtures such as "random+vanilla"), Transformer-base presets and the claims. See README.md beside this file.
"""

from . import attention, bench, claims, models, synthesizers  # noqa: F401  (registers attention, presets, claims)
from .attention import SynthesizerAttention
from .models import synthesizer_encoder
from .synthesizers import (
    DenseSynthesizer,
    FactorizedDenseSynthesizer,
    FactorizedRandomSynthesizer,
    RandomSynthesizer,
    build_synthesizer,
)

__all__ = ["SynthesizerAttention", "DenseSynthesizer", "RandomSynthesizer", "FactorizedDenseSynthesizer",
           "FactorizedRandomSynthesizer", "build_synthesizer", "synthesizer_encoder"]
