r"""The Reformer language model (Kitaev et al. 2020, arXiv:2001.04451, Sec. 3 and 5) and its presets.

Token and axial position embeddings give h (B, N, d); the reversible stack runs on [x1; x2] = [h; h]; the two
halves are concatenated, normalised and projected to the vocabulary, as in the authors' trax model:

    x1 = x2 = embed(ids) + E_pos,   y1 = x1 + F(x2),  y2 = x2 + G(y1)  (per layer),   logits = W LayerNorm([y1; y2])

with F(x) = Attention(LayerNorm(x)) (LSH attention by default) and G(x) = FeedForward(LayerNorm(x)) on
`ff_chunks` sequence chunks.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ...core.checks import check_shape
from ...core.classifier import Classifier
from ...core.embeddings import LearnedPositionalEmbedding, TokenEmbedding
from ...core.mlp import MLP
from ...registry import get_attention, register_model
from .axial import AxialPositionalEmbedding
from .reversible import ReversibleBlock, ReversibleSequence


class AttentionSublayer(nn.Module):
    """F of a reversible layer: F(x) = Dropout(Attention(LayerNorm(x))) (Sec. 3, pre-norm as in the authors' code)."""

    def __init__(self, dim: int, attention: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.norm, self.attn, self.drop = nn.LayerNorm(dim), attention, nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        return self.drop(self.attn(self.norm(x), mask=mask, causal=causal))


class FeedForwardSublayer(nn.Sequential):
    """G of a reversible layer: G(x) = FeedForward(LayerNorm(x)) with a d -> d_ff -> d MLP (position-wise), or the
    position-wise module `ff` (d -> d) in its place (Terraformer's sparse feed-forward)."""

    def __init__(self, dim: int, ff_dim: int, act: str = "relu", dropout: float = 0.0, ff: nn.Module | None = None):
        super().__init__(nn.LayerNorm(dim), ff if ff is not None else MLP(dim, ff_dim, dim, act=act, dropout=dropout))


def _attention(attention: str | Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    return get_attention(attention) if isinstance(attention, str) else attention


class ReformerLM(Classifier, nn.Module):
    """Token ids (B, N) -> logits (B, N, num_classes): the Reformer (Sec. 3, 5; see the module docstring).

    - `reversible=False` runs the same layers as ordinary residual layers (activations stored per layer): the
      same function and parameters, the comparison of the reversibility claim.
    - `axial_shape=(n_1, n_2)` with `axial_dims=(d_1, d_2)` uses axial position embeddings (max length n_1 n_2);
      otherwise a learned embedding of `max_len` positions.
    - `attention` is any registered attention ("reformer" = LSH, "reformer_shared_qk", "full", ...) built with
      `attention_kwargs`; `causal=True` makes it a language model (position t sees tokens <= t).
    - `feedforward(dim, ff_dim)` builds each layer's position-wise feed-forward module in place of the ReLU MLP
      (default), e.g. Terraformer's sparse feed-forward.
    - `num_classes` (default `vocab_size`) is the output size; `mask` (B, N), True = real token, is passed
      to the attention. The head is `core.Classifier`'s, on the normalised [y1; y2] (2d features per token).
    """

    def __init__(self, vocab_size: int = 256, num_classes: int | None = None, *, dim: int = 256, depth: int = 6,
                 heads: int = 4, dim_head: int = 64, ff_dim: int | None = None, max_len: int = 4096,
                 axial_shape: tuple[int, int] | None = None, axial_dims: tuple[int, int] | None = None,
                 attention: str | Callable[..., nn.Module] = "reformer", attention_kwargs: dict | None = None,
                 causal: bool = True, reversible: bool = True, ff_chunks: int = 1, dropout: float = 0.0,
                 act: str = "relu", feedforward: Callable[[int, int], nn.Module] | None = None):
        super().__init__()
        self.vocab_size, self.dim, self.causal = vocab_size, dim, causal
        self.num_classes = num_classes if num_classes is not None else vocab_size
        self.num_features = 2 * dim
        self.embed = TokenEmbedding(vocab_size, dim)
        if axial_shape is not None:
            self.pos = AxialPositionalEmbedding(axial_shape, axial_dims or (dim // 2, dim - dim // 2))
        else:
            self.pos = LearnedPositionalEmbedding(max_len, dim)
        self.max_len = self.pos.max_len
        make_attention = _attention(attention)
        ff_dim = ff_dim or 4 * dim
        blocks = [ReversibleBlock(AttentionSublayer(dim, make_attention(dim, heads=heads, dim_head=dim_head,
                                                                        **(attention_kwargs or {})), dropout),
                                  FeedForwardSublayer(dim, ff_dim, act, dropout,
                                                      feedforward(dim, ff_dim) if feedforward else None),
                                  chunks=ff_chunks)
                  for _ in range(depth)]
        self.layers = ReversibleSequence(blocks, reversible=reversible)
        self.norm = nn.LayerNorm(2 * dim)
        self.head = self.new_head(self.num_classes)

    def forward_features(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        check_shape(ids, "B N", name="ids")                            # the ids themselves are checked by `embed`
        if mask is not None and bool(mask.all()):
            mask = None
        h = self.pos(self.embed(ids))                                   # (B, N, d)
        y = self.layers(h.repeat(1, 1, 2), mask=mask, causal=self.causal)   # [x1; x2] = [h; h] -> [y1; y2]
        return self.norm(y)                                             # (B, N, 2d)

    def forward_head(self, h: Tensor, pre_logits: bool = False) -> Tensor:   # (B, N, 2d)
        return h if pre_logits else self.head(h)                        # (B, N, num_classes)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.forward_head(self.forward_features(ids, mask))      # (B, N, num_classes)


@register_model(paper="reformer", input_size=(65536,), num_classes=256, task="language-modeling")
def reformer_enwik8(**overrides) -> ReformerLM:
    """The paper's enwik8-64K language model (Sec. 5: d_model 1024, d_ff 4096, 8 heads, 12 layers, bytes), with
    axial position embeddings over 128 x 512 = 65,536 positions and LSH attention (chunks of 64, 4 hashes)."""
    cfg = dict(vocab_size=256, dim=1024, depth=12, heads=8, dim_head=128, ff_dim=4096, axial_shape=(128, 512),
               axial_dims=(256, 768), attention_kwargs=dict(chunk_length=64, n_hashes=4))
    return ReformerLM(**{**cfg, **overrides})


@register_model(paper="reformer", input_size=(1024,), num_classes=256, task="language-modeling")
def reformer_tiny(**overrides) -> ReformerLM:
    """A CPU-sized Reformer: d 64, 2 layers of 4 heads of 16, d_ff 256, 32 x 32 = 1,024 axial positions, LSH
    attention with chunks of 32 and 2 hashes."""
    cfg = dict(vocab_size=256, dim=64, depth=2, heads=4, dim_head=16, ff_dim=256, axial_shape=(32, 32),
               axial_dims=(32, 32), attention_kwargs=dict(chunk_length=32, n_hashes=2))
    return ReformerLM(**{**cfg, **overrides})
