"""Sparse is Enough in Scaling Transformers (Jaszczur, Chowdhery, Mohiuddin, Kaiser, Gajewski, Michalewski &
Kanerva 2021, arXiv:2111.12763): Scaling Transformers and the Terraformer.

The sparse feed-forward layer (`SparseFeedForward`: a low-rank controller keeps one unit per block, trained with
straight-through Gumbel selection, decoded from the chosen units only), the sparse QKV layer (`MultiplicativeDense`
+ `ModuleConv`, registered as the attention "terraformer_sparse_qkv"), both inside Reformer's reversible stack
(`TerraformerLM`, with LSH attention when asked), cached decoding, the presets, the claim and the decoding benchmark.
See README.md beside this file.
"""

from . import bench, claims, models, sparse_ff, sparse_qkv  # noqa: F401  (registers layers, presets, claim, bench)
from .decoding import DecodeState, LayerCache, attention_step
from .models import TerraformerLM, terraformer_c4_medium, terraformer_tiny
from .sparse_ff import SparseFeedForward
from .sparse_qkv import ModuleConv, MultiplicativeDense, SparseQKVAttention

__all__ = ["DecodeState", "LayerCache", "ModuleConv", "MultiplicativeDense", "SparseFeedForward",
           "SparseQKVAttention", "TerraformerLM", "attention_step", "terraformer_c4_medium", "terraformer_tiny"]
