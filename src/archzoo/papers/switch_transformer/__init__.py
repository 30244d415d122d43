"""Switch Transformer (Fedus, Zoph & Shazeer 2021, arXiv:2101.03961): "Switch Transformers: Scaling to Trillion
Parameter Models with Simple and Efficient Sparsity".

The Switch layer is `archzoo.core.MoE` with top-1 routing (router in float32, capacity factor, token dropping,
load-balancing loss, expert parallelism); this folder places it in every other block (`switch_feedforwards`),
starts the model with the reduced initialization (`reduced_init`), registers the presets and the claims. See
README.md beside this file.
"""

from . import bench, claims, models  # noqa: F401  (registers the benchmark, the claims and the presets)
from .models import SwitchEncoderDecoder, reduced_init, switch_base_8, switch_feedforwards, switch_lm, switch_lm_small

__all__ = ["SwitchEncoderDecoder", "reduced_init", "switch_base_8", "switch_feedforwards", "switch_lm",
           "switch_lm_small"]
