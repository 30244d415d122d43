"""The pretrained Longformer encoders (Beltagy et al. 2020, arXiv:2004.05150, Sec. 5 and 6): RoBERTa with
Longformer attention in every layer, 4,096 positions and a window of 512.

    model = create_model("longformer_base", num_classes=2)
    logits = model(ids, mask=ids != PAD, global_mask=question_tokens)      # global <s> by default
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor, nn

from ...core import LearnedPositionalEmbedding, TokenEmbedding, Transformer, check_shape
from ...core.classifier import Classifier
from ...registry import register_model
from .attention import LongformerAttention


@contextmanager
def global_tokens(model: nn.Module, global_mask: Tensor | None) -> Iterator[None]:
    """Within the block, every `LongformerAttention` of `model` uses `global_mask` (B, N) as its global tokens.

    `Transformer` calls its attentions with (x, mask, causal) only, so a per-call global mask reaches them
    this way; `None` leaves the attentions as they are (their `global_tokens`, or an enclosing block's mask).
    """
    layers = [m for m in model.modules() if isinstance(m, LongformerAttention)] if global_mask is not None else []
    before = [m.call_global_mask for m in layers]
    for m in layers:
        m.call_global_mask = global_mask
    try:
        yield
    finally:
        for m, previous in zip(layers, before):
            m.call_global_mask = previous


class LongformerEncoder(Classifier, nn.Module):
    """RoBERTa (Liu et al. 2019) with `LongformerAttention` (Sec. 5 "Pretraining and Finetuning").

    Token and learned position embeddings, LayerNorm, `depth` post-norm Transformer layers (GELU, 4x MLP,
    biases on the Q/K/V projections as in RoBERTa), the pooler (dense + tanh on the first token, <s>) and a
    linear head (`num_classes = 0`: the pooled features; `core.Classifier`'s interface). The paper copies
    RoBERTa's 512 position embeddings eight times to get 4,096 (Sec. 5); windows are 512 in every layer and <s> is
    global for classification (Sec. 6), the question tokens for QA (pass `global_mask`).
    """

    def __init__(self, vocab_size: int = 50265, num_classes: int = 0, *, dim: int = 768, depth: int = 12,
                 heads: int = 12, mlp_ratio: float = 4.0, max_len: int = 4096, window: int = 512,
                 dilation: int | Sequence[int] = 1, global_positions: Sequence[int] = (0,), dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.vocab_size, self.max_len, self.dim = vocab_size, max_len, dim
        self.embed = TokenEmbedding(vocab_size, dim)
        self.pos = LearnedPositionalEmbedding(max_len, dim)
        self.embed_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.transformer = Transformer(dim, depth, heads, dim // heads, mlp_ratio, attention=LongformerAttention,
                                       attention_kwargs=dict(window=window, dilation=dilation,
                                                             global_tokens=tuple(global_positions), qkv_bias=True),
                                       norm="post", dropout=dropout, attn_dropout=dropout)
        self.pooler = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.num_classes, self.num_features = num_classes, dim
        self.head = self.new_head(num_classes)

    def forward_features(self, ids: Tensor, mask: Tensor | None = None, global_mask: Tensor | None = None) -> Tensor:
        if check_shape(ids, "B N", name="ids")["N"] == 0:        # the ids themselves are checked by `embed`
            raise ValueError(f"ids: Longformer pools its first token (<s>, global), so it needs at least one token; "
                             f"got shape {tuple(ids.shape)}")
        h = self.drop(self.embed_norm(self.pos(self.embed(ids))))            # (B, N, dim)
        with global_tokens(self, global_mask):
            return self.transformer(h, mask=mask)                             # (B, N, dim)

    def forward_head(self, h: Tensor, pre_logits: bool = False) -> Tensor:   # (B, N, dim)
        pooled = self.pooler(h[:, 0])                                         # <s>, (B, dim)
        return pooled if pre_logits else self.head(pooled)                    # (B, num_classes)

    def forward(self, ids: Tensor, mask: Tensor | None = None, global_mask: Tensor | None = None) -> Tensor:
        return self.forward_head(self.forward_features(ids, mask, global_mask))


@register_model(paper="longformer", input_size=(4096,), num_classes=0, task="sequence-classification")
def longformer_base(**kw) -> LongformerEncoder:
    """Longformer-base: RoBERTa-base (12 layers, 768 wide, 12 heads), window 512, 4,096 positions."""
    return LongformerEncoder(**{**dict(dim=768, depth=12, heads=12), **kw})


@register_model(paper="longformer", input_size=(4096,), num_classes=0, task="sequence-classification")
def longformer_large(**kw) -> LongformerEncoder:
    """Longformer-large: RoBERTa-large (24 layers, 1024 wide, 16 heads), window 512, 4,096 positions."""
    return LongformerEncoder(**{**dict(dim=1024, depth=24, heads=16), **kw})
