"""Reformer's entry in `archzoo bench attention` / `archzoo bench tasks`, with transformers' LSHSelfAttention beside it.

Our setting at length n: chunks of 64 sorted queries (fewer for n < 64), 4 hashing rounds and the paper's
n_buckets = 2n / 64 (factorised above 64 buckets, `default_n_buckets`). The reference gets the same chunk length,
rounds and buckets (one chunk of look-back, none ahead, no dropout) and an output projection like ours.
The task suite uses 2 rounds (LSH-2) to halve the cost of its five training runs.
"""

from __future__ import annotations

from torch import nn

from ...engine.bench import register_attention_bench
from .lsh import default_n_buckets

CHUNK_LENGTH, N_HASHES, TASK_N_HASHES = 64, 4, 2


def bench_kwargs(n: int) -> dict:
    chunk = min(CHUNK_LENGTH, n)
    return dict(chunk_length=chunk, n_hashes=N_HASHES, n_buckets=default_n_buckets(n, chunk))


class _TransformersLSH(nn.Module):
    """transformers' `LSHSelfAttention` followed by a bias-free output projection: (B, N, dim) -> (B, N, dim)."""

    def __init__(self, n: int, dim: int, heads: int, dim_head: int):
        super().__init__()
        from transformers import ReformerConfig
        from transformers.models.reformer.modeling_reformer import LSHSelfAttention

        kw = bench_kwargs(n)
        buckets = kw["n_buckets"] if isinstance(kw["n_buckets"], int) else list(kw["n_buckets"])
        config = ReformerConfig(hidden_size=dim, num_attention_heads=heads, attention_head_size=dim_head,
                                lsh_attn_chunk_length=kw["chunk_length"], num_hashes=kw["n_hashes"],
                                num_buckets=buckets, lsh_num_chunks_before=1, lsh_num_chunks_after=0,
                                lsh_attention_probs_dropout_prob=0.0, is_decoder=False, max_position_embeddings=n)
        self.attn = LSHSelfAttention(config)
        self.out = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, x):
        return self.out(self.attn(x).hidden_states)


register_attention_bench("reformer", kwargs=bench_kwargs, reference=_TransformersLSH,
                         ref_name="transformers LSHSelfAttention", linear=True,
                         task_kwargs=lambda n: {**bench_kwargs(n), "n_hashes": TASK_N_HASHES})
