"""The Expire-Span language model: the course's `SequenceTransformer` run block by block over a long sequence.

Each block of `block_size` tokens attends to itself and to the cache of earlier blocks (Transformer-XL, Dai et al.
2019, Sec. 3.2), in which every `ExpireSpanAttention` layer drops the memories that expired (Sukhbaatar et al.
2021, Sec. 4.3). Positions are carried by the causal mask and by the distances t - i of the expiration mask; the
model has no positional embedding (the paper uses Transformer-XL's relative ones, omitted here).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...core.sequence import SequenceTransformer
from ...registry import register_model
from .expire_span import ExpireSpanAttention


class ExpireSpanTransformer(SequenceTransformer):
    """Token ids (B, T) -> per-token logits (B, T, num_classes), computed in blocks of `block_size` with a cache.

    `max_span` (L), `ramp` (R), `alpha` and `expire` go to every layer's `ExpireSpanAttention`; `expire=False` is
    the same model with the full cache. `memory_size()` is the mean cache size carried into a block in the last
    forward (over layers and blocks); `layers()` lists the attentions.
    """

    def __init__(self, vocab_size: int, num_classes: int, *, block_size: int = 32, max_span: int = 256,
                 ramp: float = 8.0, alpha: float = 1e-2, expire: bool = True, prune: bool = True,
                 span_init: float = 1.0, **kwargs):
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, got {block_size}")
        span = dict(max_span=max_span, ramp=ramp, alpha=alpha, expire=expire, prune=prune, span_init=span_init)
        super().__init__(vocab_size, num_classes, attention=ExpireSpanAttention, attention_kwargs=span,
                         causal=True, per_token=True, positional="none", **kwargs)
        self.block_size = block_size

    def layers(self) -> list[ExpireSpanAttention]:
        return [block.attn for block in self.transformer.blocks]

    def forward_features(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:   # (B, T) -> (B, T, dim)
        if mask is not None:
            raise ValueError("ExpireSpanTransformer takes no padding mask (every position is a real token)")
        t = ids.shape[-1] if ids.dim() == 2 else 0
        if t > self.max_len:
            raise ValueError(f"ids: sequence of {t} tokens is longer than max_len={self.max_len}")
        for layer in self.layers():
            layer.reset(tokens=max(t, 1))
        h = self.embed(ids)                                                  # (B, T, dim); checks the ids
        blocks = [self.transformer(chunk, causal=True) for chunk in h.split(self.block_size, 1)]
        return torch.cat(blocks, 1) if blocks else self.transformer.norm(h)

    def memory_size(self) -> float:
        sizes = [s for layer in self.layers() for s in layer.memory_sizes]
        return sum(sizes) / max(len(sizes), 1)


@register_model(paper="expire_span", input_size=(1024,), num_classes=256, task="language-modeling")
def expire_span_lm(vocab_size: int = 256, num_classes: int | None = None, max_len: int = 1024, dim: int = 64,
                   depth: int = 2, heads: int = 4, dim_head: int = 16, **kwargs) -> ExpireSpanTransformer:
    """A small causal Expire-Span model (the course's sequence size: dim 64, depth 2, 4 heads of 16), blocks of 32,
    L = 256, R = 8 (a scaled-down version of the paper's character-level models, Sec. 5)."""
    return ExpireSpanTransformer(vocab_size, num_classes or vocab_size, dim=dim, depth=depth, heads=heads,
                                 dim_head=dim_head, max_len=max_len, **kwargs)
