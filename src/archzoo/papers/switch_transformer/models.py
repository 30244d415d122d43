"""Switch Transformer models: a Transformer whose every other feed-forward layer is a Switch layer (Sec. 2).

    lm = switch_lm(vocab_size=100, num_experts=8)              # causal character LM (the claims' model)
    reduced_init(lm, scale=0.1)                                # Sec. 2.4: std sqrt(0.1 / fan_in)

The Switch layer is `archzoo.core.MoE` with k=1; this file only says where it goes and how it starts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ...core import Experts, MoE
from ...core.sequence import SequenceTransformer
from ...registry import register_model


def switch_feedforwards(depth: int, num_experts: int, sparse_step: int = 2, **moe_kwargs) -> list:
    """One feed-forward per block: a Switch layer (`MoE`, k=1) in blocks i with i % sparse_step == 1 (every other
    block, as in Sec. 2 and Hugging Face's `encoder_sparse_step`), the dense ReLU FFN of T5 in the others."""
    def switch(dim: int) -> MoE:
        return MoE(dim, num_experts, k=1, **moe_kwargs)

    return [switch if i % sparse_step == 1 or sparse_step == 1 else "relu" for i in range(depth)]


def reduced_init(model: nn.Module, scale: float = 0.1) -> nn.Module:
    """Sec. 2.4, "smaller parameter initialization": every weight matrix (linear layers, router, experts) drawn from
    a truncated normal with mean 0 and std sqrt(scale / fan_in), truncated at two standard deviations (the paper
    reduces Transformer's default scale 1.0 to 0.1). Biases and embeddings are left as they are."""
    with torch.no_grad():
        for module in model.modules():
            weights = [module.weight] if isinstance(module, nn.Linear) else \
                [module.w_in, module.w_out] if isinstance(module, Experts) else []
            for w in weights:
                std = (scale / w.shape[-1]) ** 0.5
                nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
    return model


def switch_lm(vocab_size: int, num_experts: int | None = 8, *, dim: int = 64, depth: int = 4, heads: int = 4,
              dim_head: int = 16, max_len: int = 128, capacity_factor: float | None = 1.0,
              balance_weight: float = 0.01, expert_dropout: float = 0.0, sparse_step: int = 2,
              init_scale: float = 0.1, **kwargs) -> SequenceTransformer:
    """A causal character LM (B, N) -> (B, N, vocab_size): `SequenceTransformer` with Switch layers, or the dense
    baseline of equal FLOPs per token with `num_experts=None` (each expert has the dense FFN's width 4 * dim, and
    a token visits one). `expert_dropout` is the dropout inside the experts (Sec. 2.4)."""
    feedforward: str | list[str | Callable] = "relu"
    if num_experts is not None:
        feedforward = switch_feedforwards(depth, num_experts, sparse_step, capacity_factor=capacity_factor,
                                          balance_weight=balance_weight, dropout=expert_dropout)
    model = SequenceTransformer(vocab_size, vocab_size, dim=dim, depth=depth, heads=heads, dim_head=dim_head,
                                max_len=max_len, causal=True, feedforward=feedforward, **kwargs)
    return reduced_init(model, init_scale)


@register_model(paper="switch_transformer", kwargs_to=switch_lm, input_size=(128,), num_classes=256,
                task="language-modeling")
def switch_lm_small(vocab_size: int = 256, num_classes: int | None = None, max_len: int = 128,
                    **kwargs) -> SequenceTransformer:
    """The claims' Switch LM: dim 64, 4 blocks (2 of them Switch layers with 8 experts), capacity factor 1.0."""
    if num_classes not in (None, vocab_size):
        raise ValueError(f"num_classes must equal vocab_size ({vocab_size}) for a language model, got {num_classes}")
    return switch_lm(vocab_size, max_len=max_len, **kwargs)
