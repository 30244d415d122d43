r"""The attention protocol every attention of the course follows, and full (softmax) attention.

Protocol
--------
An attention is an `nn.Module` registered with `@register_attention(name, paper=slug)`:

    attn = Attention(dim, heads=8, dim_head=64, dropout=0.0, **variant_kwargs)
    y = attn(x, context=None, mask=None, causal=False)          # (B, N, dim)

- `x` is `(B, N, dim)`, batch first.
- `context` `(B, M, dim)` turns on cross-attention: queries come from `x`, keys and values from `context`.
- `mask` is a bool padding mask `(B, N_kv)` over the keys (`N_kv` = M with a context, else N):
  True = keep (a real token), False = padding that no query may attend to.
- `causal=True`: query i attends only to keys j <= i (decoder self-attention).
- `dropout` is dropout on the attention weights, applied in training only.
- Floating inputs of another dtype are cast to the parameters' dtype (float64 into a float32 layer computes in
  float32), by `attention_inputs`, which every attention calls first to check its arguments.
- Batch 0 gives an empty output; so does length 0 where the method has a meaning for it, else a `ValueError`.
- A variant that its paper defines without causal masking, padding masks or cross-attention raises a
  `ValueError` saying so; it never silently ignores the argument.

Transformer(attention=name) builds any registered attention through this protocol.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..registry import register_attention
from .checks import cast_floating, check_shape


def attention_inputs(x: Tensor, context: Tensor | None, mask: Tensor | None, causal: bool, dim: int,
                     context_dim: int | None = None, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Check the protocol's arguments (shapes, dtypes, causal needs N keys); return `x` and the key/value source.

    x (B, N, dim) and context (B, M, context_dim) or None, floating point; mask (B, N_kv) bool or None.
    Returns (x, kv), kv = `context` or `x`, both cast to `dtype` (the layer's parameter dtype, see
    `cast_floating`) when it is given. Raises ValueError naming the expected and received shapes or dtypes.
    """
    b, n = check_shape(x, "B N D", dtype="float", D=dim)["B"], x.shape[1]
    x = kv = cast_floating(x, dtype)
    if context is not None:
        check_shape(context, "B M D", name="context", dtype="float", B=b, D=context_dim or dim)
        kv = cast_floating(context, dtype)
    m = kv.shape[1]
    if causal and m != n:
        raise ValueError(f"causal attention needs as many keys as queries; got {n} queries and {m} context tokens")
    if mask is not None:
        check_shape(mask, "B N_kv", name="mask", dtype="bool", B=b, N_kv=m)
    return x, kv


def padding_keep(mask: Tensor | None, causal: bool, n: int, m: int) -> tuple[Tensor | None, Tensor | None]:
    """The boolean `attn_mask` of `scaled_dot_product_attention` for a padding mask (B, M), and the keyless queries.

    Returns (keep, empty): keep (B, 1, N or 1, M), True where query i may attend to key j (with `causal`, also
    j <= i), except that a query with no key at all may attend anywhere so that the softmax has no NaN; `empty`
    (B, 1, N or 1, 1) marks those queries, whose outputs the caller sets to zero. (None, None) without a mask.
    """
    if mask is None:
        return None, None
    keep = rearrange(mask, "b m -> b 1 1 m")                                   # (B, 1, 1, M)
    if causal:
        keep = keep & torch.ones(n, m, dtype=torch.bool, device=mask.device).tril()   # (B, 1, N, M)
    empty = ~keep.any(-1, keepdim=True)                                        # (B, 1, N or 1, 1) no key at all
    return keep | empty, empty                                                 # attend anywhere, zeroed after


@register_attention("full")
class FullAttention(nn.Module):
    r"""Multi-head scaled dot-product attention (Vaswani et al., 2017, arXiv:1706.03762, Sec. 3.2).

        Attention(Q, K, V) = softmax(Q K^T / \sqrt{d_k}) V                           (Eq. 1)
        MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

    computed by `torch.nn.functional.scaled_dot_product_attention`. The projections W^Q, W^K, W^V
    (`to_q`, `to_k`, `to_v`, `dim -> heads * dim_head`) have no bias and W^O (`to_out`) has one, as in most
    implementations. Causal masking is the decoder's masking of Sec. 3.2.3.

    A query with no key to attend to (every key padded, or a causal prefix of padding) has an empty softmax;
    instead of NaN its output is zero, so in a residual block that token passes through unchanged.
    `context_dim` (default `dim`) lets the context of cross-attention have its own width; `qkv_bias=True` gives
    W^Q, W^K, W^V biases (BERT, ViT).
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0,
                 context_dim: int | None = None, qkv_bias: bool = False):
        super().__init__()
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        self.context_dim = context_dim or dim
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=qkv_bias)                  # W^Q, all heads at once
        self.to_k = nn.Linear(self.context_dim, inner, bias=qkv_bias)     # W^K
        self.to_v = nn.Linear(self.context_dim, inner, bias=qkv_bias)     # W^V
        self.to_out = nn.Linear(inner, dim)                            # W^O

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        x, kv = attention_inputs(x, context, mask, causal, self.dim, self.context_dim, self.to_out.weight.dtype)
        n, m = x.shape[1], kv.shape[1]

        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)      # (B, H, N, d)
        k = rearrange(self.to_k(kv), "b m (h d) -> b h m d", h=self.heads)     # (B, H, M, d)
        v = rearrange(self.to_v(kv), "b m (h d) -> b h m d", h=self.heads)     # (B, H, M, d)

        keep, empty = padding_keep(mask, causal, n, m)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0,
                                             is_causal=causal and mask is None)  # (B, H, N, d)
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))              # (B, N, dim)
        if empty is not None:
            out = out.masked_fill(rearrange(empty, "b 1 n 1 -> b n 1"), 0.0)
        return out


class MapSelfAttention(nn.Module):
    """Multi-head self-attention over all H W positions of a (B, C, H, W) map, the attention map materialised.

    The O((hw)^2) baseline that attention-for-vision papers compare against (LambdaNetworks Table 2, Axial-DeepLab
    Sec. 3.2): `FullAttention` over the flattened map under PyTorch's "math" SDPA backend, which stores the
    (hw x hw) weights as those papers assume. Fused kernels (FlashAttention, 2022) avoid storing the map and are not
    the papers' baseline.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64):
        super().__init__()
        self.attention = FullAttention(dim, heads=heads, dim_head=dim_head)

    def forward(self, x: Tensor) -> Tensor:                              # (B, C, H, W)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        h = check_shape(x, "B C H W", C=self.attention.dim)["H"]
        with sdpa_kernel(SDPBackend.MATH):
            y = self.attention(rearrange(x, "b c h w -> b (h w) c"))     # (B, n, C)
        return rearrange(y, "b (h w) c -> b c h w", h=h)
