"""Switch Transformer models: a Transformer whose every other feed-forward layer is a Switch layer (Sec. 2).

    lm = switch_lm(vocab_size=100, num_experts=8)              # causal character LM (the claims' model)
    reduced_init(lm, scale=0.1)                                # Sec. 2.4: std sqrt(0.1 / fan_in)
    create_model("switch_base_8")                              # Switch-Base, 8 experts (Sec. 3, Table 9): 619M

The Switch layer is `archzoo.core.MoE` with k=1; this file only says where it goes and how it starts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ...core import Experts, MoE, SinusoidalPositionalEmbedding, TokenEmbedding, Transformer
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
            if isinstance(module, Experts):
                module.reset_parameters(scale)
            elif isinstance(module, nn.Linear):
                std = (scale / module.weight.shape[-1]) ** 0.5
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
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


class SwitchEncoderDecoder(nn.Module):
    """The text-to-text encoder-decoder of Switch-Base (Sec. 3; T5's layout, Raffel et al. 2020) from core parts:
    a token embedding shared by encoder, decoder and the tied output layer (scaled by dim^-1/2 as in T5), and two
    pre-norm `Transformer`s whose odd blocks hold Switch layers; the decoder is causal and cross-attends to the
    encoder. `forward(ids, decoder_ids)` (B, N), (B, M) -> logits (B, M, vocab_size); `decoder_ids` defaults to
    `ids` (a language model over the same tokens).

    Differences from T5 (and Hugging Face's `SwitchTransformersForConditionalGeneration`): sinusoidal absolute
    positions instead of relative position buckets, LayerNorm instead of RMSNorm, biases in the attention output
    and in the dense FFNs; `switch_base_8_parameter_difference` counts them exactly.
    """

    def __init__(self, vocab_size: int = 32128, dim: int = 768, depth: int = 12, heads: int = 12, dim_head: int = 64,
                 mlp_ratio: float = 4.0, num_experts: int = 8, max_len: int = 512, capacity_factor: float = 1.25,
                 expert_dropout: float = 0.0, dropout: float = 0.0, init_scale: float = 0.1):
        super().__init__()
        self.vocab_size = self.num_classes = vocab_size
        self.max_len = max_len
        self.embed = TokenEmbedding(vocab_size, dim)
        self.pos = SinusoidalPositionalEmbedding(dim, max_len)
        ffs = switch_feedforwards(depth, num_experts, 2, hidden_dim=int(dim * mlp_ratio),
                                  capacity_factor=capacity_factor, dropout=expert_dropout)
        self.encoder = Transformer(dim, depth, heads, dim_head, mlp_ratio, feedforward=ffs, dropout=dropout)
        self.decoder = Transformer(dim, depth, heads, dim_head, mlp_ratio, feedforward=ffs, dropout=dropout,
                                   cross_attention=True)
        reduced_init(self, init_scale)

    def forward(self, ids: torch.Tensor, decoder_ids: torch.Tensor | None = None) -> torch.Tensor:
        memory = self.encoder(self.pos(self.embed(ids)))                           # (B, N, dim)
        decoder_ids = ids if decoder_ids is None else decoder_ids
        h = self.decoder(self.pos(self.embed(decoder_ids)), causal=True, context=memory)   # (B, M, dim)
        return h @ self.embed.weight.T * h.shape[-1] ** -0.5                       # (B, M, vocab_size), tied


def switch_base_8_parameter_difference(dim: int = 768, depth: int = 12, d_ff: int = 3072, heads: int = 12,
                                       buckets: int = 32) -> int:
    """Our `switch_base_8` minus Hugging Face's google/switch-base-8 in parameters: a bias per LayerNorm (2 per
    encoder block, 3 per decoder block, 2 final), per attention output (1 per encoder block, 2 per decoder block)
    and per dense FFN (d_ff + dim, half the blocks), less T5's relative position buckets (buckets x heads in the
    encoder and in the decoder)."""
    norms, attentions, dense_ffns = 5 * depth + 2, 3 * depth, depth
    return (norms + attentions) * dim + dense_ffns * (d_ff + dim) - 2 * buckets * heads


@register_model(paper="switch_transformer", kwargs_to=SwitchEncoderDecoder, input_size=(512,), num_classes=32128,
                task="language-modeling")
def switch_base_8(vocab_size: int = 32128, num_classes: int | None = None, **kwargs) -> SwitchEncoderDecoder:
    """Switch-Base with 8 experts (Sec. 3, Table 9; Hugging Face google/switch-base-8): dim 768, 12 + 12 blocks, 12
    heads of 64, experts of width 3072 in every other block, 32,128 tokens; 619,459,584 parameters, Hugging Face's
    619,339,008 plus `switch_base_8_parameter_difference()` = 120,576."""
    if num_classes not in (None, vocab_size):
        raise ValueError(f"num_classes must equal vocab_size ({vocab_size}) for a language model, got {num_classes}")
    return SwitchEncoderDecoder(vocab_size, **kwargs)
