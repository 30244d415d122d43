"""The Transformer stack with pluggable attention and feed-forward layers.

    Transformer(dim=256, depth=4, attention="linformer", attention_kwargs=dict(seq_len=512, k=64))

`attention` is any name registered with `register_attention` (or an attention class following the protocol
of `core.attention`), `feedforward` any name registered with `register_feedforward` (or a factory), so each
efficient-attention paper swaps one component and keeps the rest identical.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ..registry import get_attention
from .attention import FullAttention
from .checks import cast_floating, check_shape
from .mlp import build_feedforward


def _attention_class(attention: str | Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if isinstance(attention, str):
        return get_attention(attention)        # UnknownNameError (a ValueError) names the close matches
    if callable(attention):
        return attention
    raise ValueError(f"attention must be a registered name or an attention class, got {type(attention).__name__}")


class TransformerBlock(nn.Module):
    """One layer of Vaswani et al. (2017, arXiv:1706.03762, Sec. 3.1): self-attention, optional cross-attention
    to a `context` (the decoder's encoder-decoder attention), and a position-wise feed-forward network.

    Each sub-layer f is residual with LayerNorm, either as in the paper (`norm="post"`: LayerNorm(x + f(x)))
    or pre-norm (`norm="pre"`: x + f(LayerNorm(x)), Xiong et al. 2020, arXiv:2002.04745), which trains
    without warm-up and is what GPT-2 and ViT use. `dropout` is the residual dropout of Sec. 5.4 (inside the
    feed-forward for registered feed-forwards), `attn_dropout` the dropout on attention weights.
    Cross-attention is always full attention: efficient variants replace the self-attention.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, mlp_ratio: float = 4.0,
                 attention: str | Callable[..., nn.Module] = "full", attention_kwargs: dict | None = None,
                 feedforward: str | nn.Module | Callable[[int], nn.Module] = "mlp", norm: str = "pre",
                 dropout: float = 0.0, attn_dropout: float = 0.0, cross_attention: bool = False,
                 norm_eps: float = 1e-5):
        super().__init__()
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.norm_position = norm
        self.attn = _attention_class(attention)(dim, heads=heads, dim_head=dim_head, dropout=attn_dropout,
                                                **(attention_kwargs or {}))
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.cross_attn = FullAttention(dim, heads, dim_head, attn_dropout) if cross_attention else None
        self.norm_cross = nn.LayerNorm(dim, eps=norm_eps) if cross_attention else None
        self.ff = build_feedforward(feedforward, dim, mlp_ratio, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop = nn.Dropout(dropout)

    def _residual(self, x: Tensor, norm: nn.Module, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        if self.norm_position == "pre":
            return x + sublayer(norm(x))
        return norm(x + sublayer(x))

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False, context: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:    # (B, N, dim)
        if self.cross_attn is None and (context is not None or context_mask is not None):
            raise ValueError("this block has no cross-attention: build it with cross_attention=True to pass a context")
        if self.cross_attn is not None and context is None:
            raise ValueError("this block has cross-attention: pass context (B, M, dim)")
        x = self._residual(x, self.norm1, lambda h: self.drop(self.attn(h, mask=mask, causal=causal)))
        if self.cross_attn is not None:
            x = self._residual(x, self.norm_cross,
                               lambda h: self.drop(self.cross_attn(h, context=context, mask=context_mask)))
        return self._residual(x, self.norm2, self.ff)


class Transformer(nn.Module):
    """A stack of `depth` `TransformerBlock`s on `(B, N, dim)` (Vaswani et al., 2017, arXiv:1706.03762).

    The encoder is `Transformer(dim, depth)`, the decoder `Transformer(dim, depth, cross_attention=True)` called
    with `causal=True, context=encoder_output`. `mask` is a bool padding mask (B, N), True = real token;
    `context_mask` (B, M) does the same for the context. Pre-norm stacks end with a LayerNorm (`final_norm`),
    since their residual stream is never normalized otherwise; post-norm stacks already end normalized.
    `feedforward` may be a registered name, or a factory or class called as `f(dim)`, once per block, or a list
    of `depth` of them, one per block (Switch Transformer alternates dense and expert layers).
    `norm_eps` is every LayerNorm's epsilon (1e-6 in ViT, 1e-12 in BERT).
    """

    def __init__(self, dim: int, depth: int, heads: int = 8, dim_head: int = 64, mlp_ratio: float = 4.0,
                 attention: str | Callable[..., nn.Module] = "full", attention_kwargs: dict | None = None,
                 feedforward: str | Callable[[int], nn.Module] | list = "mlp", norm: str = "pre",
                 dropout: float = 0.0, attn_dropout: float = 0.0, final_norm: bool = True,
                 cross_attention: bool = False, norm_eps: float = 1e-5):
        super().__init__()
        if isinstance(feedforward, nn.Module) and depth > 1:
            raise ValueError("feedforward is a module instance, which the blocks would share: pass a factory "
                             "(dim) -> nn.Module or a class instead")
        feedforwards = list(feedforward) if isinstance(feedforward, (list, tuple)) else [feedforward] * depth
        if len(feedforwards) != depth:
            raise ValueError(f"feedforward: expected one per block ({depth}), got {len(feedforwards)}")
        self.dim = dim
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, dim_head, mlp_ratio, attention, attention_kwargs, ff, norm,
                             dropout, attn_dropout, cross_attention, norm_eps)
            for ff in feedforwards)
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm == "pre" and final_norm else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False, context: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        check_shape(x, "B N D", dtype="float", D=self.dim)
        weight = next(self.parameters(), None)                 # float64 input into a float32 stack: computed in float32
        if weight is not None:
            x, context = cast_floating(x, weight.dtype), cast_floating(context, weight.dtype)
        for block in self.blocks:
            x = block(x, mask=mask, causal=causal, context=context, context_mask=context_mask)
        return self.norm(x)                                    # (B, N, dim)
