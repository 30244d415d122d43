"""GShard's mixture-of-experts Transformer: every other feed-forward layer is a top-2 MoE layer (Sec. 2.1, Fig. 3).

    lm = gshard_lm(vocab_size=100, num_experts=8)       # causal character LM (the claims' model)

The MoE layer is `archzoo.core.MoE` with k=2, random routing of the second expert, groups of `group_size` tokens
and expert capacity 2S / E per group (capacity factor 2); this file only places it.
"""

from __future__ import annotations

from ...core import MoE
from ...core.sequence import SequenceTransformer
from ...registry import register_model


def gshard_lm(vocab_size: int, num_experts: int = 8, *, k: int = 2, dim: int = 64, depth: int = 4, heads: int = 4,
              dim_head: int = 16, max_len: int = 128, capacity_factor: float | None = 2.0, group_size: int | None = 512,
              random_routing: bool = True, balance_weight: float = 0.01, **kwargs) -> SequenceTransformer:
    """A causal LM (B, N) -> (B, N, vocab_size) whose odd blocks hold `MoE(k=k)` layers (GShard Sec. 2.1: "replace
    every other feed-forward layer with an MoE layer"). Each expert is as wide as the dense FFN (4 * dim).
    `group_size` must divide the tokens of a batch (B * N); None routes the whole batch as one group."""
    def moe(dim: int) -> MoE:
        return MoE(dim, num_experts, k=k, capacity_factor=capacity_factor, group_size=group_size,
                   random_routing=random_routing, balance_weight=balance_weight)

    feedforward = [moe if i % 2 == 1 else "relu" for i in range(depth)]
    return SequenceTransformer(vocab_size, vocab_size, dim=dim, depth=depth, heads=heads, dim_head=dim_head,
                               max_len=max_len, causal=True, feedforward=feedforward, **kwargs)


@register_model(paper="gshard", kwargs_to=gshard_lm, input_size=(128,), num_classes=256, task="language-modeling")
def gshard_lm_small(vocab_size: int = 256, num_classes: int | None = None, max_len: int = 128,
                    group_size: int | None = None, **kwargs) -> SequenceTransformer:
    """The claims' GShard LM: dim 64, 4 blocks (2 with top-2 MoE layers of 8 experts), capacity factor 2; one group
    per batch by default, so that any batch shape runs (the claims set `group_size`)."""
    if num_classes not in (None, vocab_size):
        raise ValueError(f"num_classes must equal vocab_size ({vocab_size}) for a language model, got {num_classes}")
    return gshard_lm(vocab_size, max_len=max_len, group_size=group_size, **kwargs)
