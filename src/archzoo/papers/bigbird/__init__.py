"""BigBird (Zaheer et al. 2020, arXiv:2007.14062): "Big Bird: Transformers for Longer Sequences".

Block-sparse attention with global, window and random blocks (ITC), computed by gathering key blocks (no n x n
matrix), registered as `Transformer(attention="bigbird")`; its attention graph and path lengths; the small
sequence preset `bigbird_small`; the benchmark entry against transformers' BigBird; the claims. See README.md.
"""

from . import attention, bench, claims, graph, models  # noqa: F401  (registers the attention, bench, preset, claims)
from .attention import BigBirdAttention, block_adjacency, block_layout, random_block_plan
from .bench import HFBigBirdSelfAttention, bench_kwargs
from .graph import PatternAttention, attention_graph, dependency_norms, path_lengths, predicted_reach, token_adjacency
from .models import bigbird_small

__all__ = ["BigBirdAttention", "HFBigBirdSelfAttention", "PatternAttention", "attention_graph", "bench_kwargs",
           "bigbird_small", "block_adjacency", "block_layout", "dependency_norms", "path_lengths", "predicted_reach",
           "random_block_plan", "token_adjacency"]
