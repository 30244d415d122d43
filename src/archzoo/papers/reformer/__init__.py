"""Reformer: The Efficient Transformer (Kitaev, Kaiser & Levskaya 2020, arXiv:2001.04451).

LSH attention (`LSHAttention`, registered as the attention "reformer") and its exact shared-QK counterpart
(`SharedQKAttention`, "reformer_shared_qk"), reversible residual layers with a recomputing backward pass
(`ReversibleBlock`, `ReversibleSequence`, `ReversibleFunction`), chunked feed-forward layers, axial position
embeddings, the `ReformerLM` presets and the claims. See README.md beside this file.
"""

from . import axial, bench, claims, lsh, models, reversible  # noqa: F401  (registers attentions, presets, claims)
from .axial import AxialPositionalEmbedding
from .lsh import LSHAttention, SharedQKAttention, default_n_buckets, hash_vectors
from .models import ReformerLM, reformer_enwik8, reformer_tiny
from .reversible import ReversibleBlock, ReversibleFunction, ReversibleSequence, chunked

__all__ = ["AxialPositionalEmbedding", "LSHAttention", "SharedQKAttention", "ReformerLM", "ReversibleBlock",
           "ReversibleFunction", "ReversibleSequence", "chunked", "default_n_buckets", "hash_vectors",
           "reformer_enwik8", "reformer_tiny"]
