"""The linear transformer in `archzoo bench attention` and `archzoo bench tasks`.

The method has no hyper-parameter that depends on n (the feature map elu + 1 has as many features as a head
has dimensions), so `kwargs(n)` is empty: the defaults (eps 1e-6, causal chunks of 64) at every length.

Reference: `linear_attention_transformer.linear_attention_transformer.SelfAttention` (lucidrains'
linear-attention-transformer), the global linear-attention layer of its `LinearAttentionTransformer`, with the
same heads and head size. Its kernel is not elu + 1: non-causal, it normalizes queries with a softmax over
features and keys with a softmax over positions (the "efficient attention" of Shen et al. 2018) and needs no
denominator. The cost is the same, O(N d e) per head with two (d x e)-sized products, which is what the benchmark
compares. The authors' own library (pytorch-fast-transformers) builds CUDA/C++ extensions and is not installed.
"""

from __future__ import annotations

from torch import nn

from ...engine.bench import register_attention_bench


def make_reference(n: int, dim: int, heads: int, dim_head: int) -> nn.Module:
    """linear-attention-transformer's non-causal `SelfAttention` with our heads; forward (B, N, dim) -> (B, N, dim)."""
    from linear_attention_transformer.linear_attention_transformer import SelfAttention

    return SelfAttention(dim, heads, causal=False, dim_head=dim_head)


register_attention_bench("linear_transformer", kwargs=lambda n: {}, reference=make_reference,
                         ref_name="linear-attention-transformer SelfAttention", linear=True)
