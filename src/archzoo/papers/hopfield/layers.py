r"""Hopfield layers for deep learning (Ramsauer et al. 2020, arXiv:2008.02217, Sec. 3): `Hopfield`,
`HopfieldPooling`, `HopfieldLayer`.

Raw state patterns R (S, d_in) and raw stored patterns Y (N, d_in) are mapped into an associative space,
Q = R W_Q and K = Y W_K, where the update of Eq. 3 runs: (Q^new)^T = K^T softmax(beta K Q^T). Projected by W_V,

    Z = softmax(beta Q K^T) K W_V                                                                  (Eq. 9)

and with beta = 1 / sqrt(d_k) and V = Y W_K W_V (learned as one matrix W_V) this is the attention of the
Transformer, Z = softmax(Q K^T / sqrt(d_k)) V (Eq. 10). The three layers differ in what is learned:

- `Hopfield(R, Y)`: both R and Y are inputs (self-attention when Y = R, cross-attention otherwise);
- `HopfieldPooling(Y)`: the state patterns Q are learned, static queries that pool a set Y (Eq. 11, 12);
- `HopfieldLayer(R)`: the stored patterns are learned, a memory that the inputs R query (Eq. 13).

`update_steps` > 1 iterates the update in the associative space before the final association,
Q <- softmax(beta Q K^T) K, so the state patterns move to the fixed points of the energy (Theorem 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import attention_inputs, padding_keep
from ...core.checks import check_shape
from ...registry import register_attention


@register_attention("hopfield", paper="hopfield")
class Hopfield(nn.Module):
    r"""The Hopfield layer Hopfield(R, Y) = softmax(beta R W_Q W_K^T Y^T) Y W_V (Sec. 3, Eq. 9, 10), multi-head.

    Follows the attention protocol of `core.attention`: `forward(x, context=None, mask=None, causal=False)`, R = x
    and Y = `context` (or x). Projections `to_q` (W_Q), `to_k` (W_K), `to_v` (W_V), `to_out` are named and shaped
    as in `FullAttention`, so weights load across.

    - `beta`: the inverse temperature, default 1 / sqrt(dim_head), which makes one update step exactly softmax
      attention; a larger beta retrieves single stored patterns, a smaller one averages (metastable states, Sec. 3).
    - `update_steps`: how many updates of Eq. 3 the state patterns make in the associative space before the
      final association (1: attention). Padding masks and causal masking hold in every step: a masked key is no
      stored pattern, and with `causal=True` query i stores only the keys j <= i.
    - `dropout` drops attention weights of the final association, in training only.
    - A query with no key to attend to (every key padded) outputs zero, as in `FullAttention`.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, beta: float | None = None,
                 update_steps: int = 1, context_dim: int | None = None):
        super().__init__()
        if beta is not None and not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if update_steps < 1:
            raise ValueError(f"update_steps must be >= 1, got {update_steps}")
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        self.beta = dim_head ** -0.5 if beta is None else beta
        self.update_steps, self.context_dim = update_steps, context_dim or dim
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)                  # W_Q: state patterns -> associative space
        self.to_k = nn.Linear(self.context_dim, inner, bias=False)     # W_K: stored patterns -> associative space
        self.to_v = nn.Linear(self.context_dim, inner, bias=False)     # W_V (the paper's W_K W_V as one matrix)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        x, y = attention_inputs(x, context, mask, causal, self.dim, self.context_dim, self.to_out.weight.dtype)
        n, m = x.shape[1], y.shape[1]
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)      # Q = R W_Q: (B, H, N, d)
        k = rearrange(self.to_k(y), "b m (h d) -> b h m d", h=self.heads)      # K = Y W_K: (B, H, M, d)
        v = rearrange(self.to_v(y), "b m (h d) -> b h m d", h=self.heads)      # V = Y W_V: (B, H, M, d)
        keep, empty = padding_keep(mask, causal, n, m)
        is_causal = causal and mask is None
        for _ in range(self.update_steps - 1):                                 # Eq. 3: Q <- softmax(beta Q K^T) K
            q = F.scaled_dot_product_attention(q, k, k, attn_mask=keep, is_causal=is_causal, scale=self.beta)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=is_causal, scale=self.beta,
                                             dropout_p=self.dropout if self.training else 0.0)   # (B, H, N, d)
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))              # (B, N, dim)
        if empty is not None:
            out = out.masked_fill(rearrange(empty, "b 1 n 1 -> b n 1"), 0.0)
        return out


class HopfieldPooling(nn.Module):
    r"""HopfieldPooling(Y) = softmax(beta Q W_K^T Y^T) Y W_V with learned state patterns Q (Sec. 3, Eq. 11, 12).

    The `num_queries` static state patterns are parameters; each pools a set Y (B, N, dim) into one vector
    by one update of the Hopfield network whose stored patterns are the set's elements, so the result does not
    depend on the order of the elements. Multiple-instance learning uses it as the bag pooling (Sec. 4). The state
    patterns start small (N(0, 0.02^2)), so at initialization every element gets nearly the same weight: the layer
    starts as mean pooling and learns which elements to retrieve.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, num_queries: int = 1, beta: float | None = None,
                 update_steps: int = 1, dropout: float = 0.0):
        super().__init__()
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}")
        self.query = nn.Parameter(torch.randn(num_queries, dim) * 0.02)       # Q, the learned state patterns
        self.hopfield = Hopfield(dim, heads, dim_head, dropout, beta, update_steps)

    def forward(self, y: Tensor, mask: Tensor | None = None) -> Tensor:       # (B, N, dim) -> (B, num_queries, dim)
        b = check_shape(y, "B N D", dtype="float", D=self.query.shape[1])["B"]
        if y.shape[1] == 0:
            raise ValueError(f"input: pooling needs a set of at least one element, got shape {tuple(y.shape)}")
        return self.hopfield(self.query.expand(b, -1, -1), context=y, mask=mask)


class HopfieldLayer(nn.Module):
    r"""HopfieldLayer(R) = softmax(beta R W_Q W_K^T) W_K W_V: the stored patterns are learned (Sec. 3, Eq. 13).

    `num_patterns` stored patterns Y are parameters (the paper folds them into W_K, here they are kept apart so
    that `Hopfield` serves all three layers: the function class is the same); each element of R (B, N, dim)
    retrieves from this memory independently of the others, like a learned key-value lookup or, with beta large,
    a nearest-prototype layer.
    """

    def __init__(self, dim: int, num_patterns: int, heads: int = 8, dim_head: int = 64, beta: float | None = None,
                 update_steps: int = 1, dropout: float = 0.0):
        super().__init__()
        if num_patterns < 1:
            raise ValueError(f"num_patterns must be >= 1, got {num_patterns}")
        self.stored = nn.Parameter(torch.randn(num_patterns, dim) * dim ** -0.5)   # Y, the learned stored patterns
        self.hopfield = Hopfield(dim, heads, dim_head, dropout, beta, update_steps)

    def forward(self, r: Tensor) -> Tensor:                                   # (B, N, dim) -> (B, N, dim)
        b = check_shape(r, "B N D", dtype="float", D=self.stored.shape[1])["B"]
        return self.hopfield(r, context=self.stored.expand(b, -1, -1))
