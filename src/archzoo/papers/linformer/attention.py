r"""Linformer self-attention (Wang et al. 2020, arXiv:2006.04768, Sec. 4, Eq. 7).

Softmax attention over n keys costs O(n^2). Sec. 3 finds the context mapping matrix P = softmax(Q K^T / sqrt(d))
low rank, and Linformer builds the low rank in: keys and values are projected along the sequence to k rows
before the softmax,

    head_i = softmax( Q W_i^Q (E_i K W_i^K)^T / sqrt(d_k) ) F_i V W_i^V                   (Eq. 7)
             \____________ P-bar: n x k ____________/ \___ k x d ___/

so every head costs O(n k) time and memory. Theorem 2: k = Theta(d log d / eps^2) suffices, independent of n.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import attention_inputs
from ...registry import register_attention
from .projection import SequenceProjection

SHARING = ("none", "headwise", "kv", "layerwise")


@register_attention("linformer", paper="linformer")
class LinformerAttention(nn.Module):
    r"""Multi-head Linformer attention, Eq. 7, with the parameter sharing of Sec. 4.

    - `seq_len` (n): the longest key/value sequence; shorter ones use E[:, :m] (Sec. 4). `k`: the projected length.
    - `sharing`: "none" (E_i, F_i per head, Eq. 7 as written), "headwise" (one E and one F per layer, the
      default), "kv" (one E per layer for keys and values, E = F), "layerwise" (one E for every layer, keys and
      values: pass the same `projection=SequenceProjection(seq_len, k)` to each layer, e.g. in
      `Transformer(..., attention_kwargs=dict(seq_len=n, k=k, projection=shared))`). Passing `projection` alone
      means layerwise.
    - Padding `mask` `(B, M)` (True = keep): padded keys and values are zeroed before the projection.
      `context` `(B, M, dim)`: cross-attention, keys and values (M <= seq_len) from the context.
    - `causal=True` raises `ValueError`: the paper defines no causal form (E mixes every position into each
      projected key, the future included).

    Where E is shared by the heads (all modes but "none") it is applied to the layer input before W^K and W^V,
    E (X W^K) = (E X) W^K, so K and V are computed on k rows instead of n; with per-head E_i the keys are
    projected after W^K. `to_q`, `to_k`, `to_v`, `to_out` are named as in `FullAttention`.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, *, seq_len: int,
                 k: int = 256, sharing: str | None = None, projection: SequenceProjection | None = None):
        super().__init__()
        sharing = sharing or ("layerwise" if projection is not None else "headwise")
        if sharing not in SHARING:
            raise ValueError(f"sharing must be one of {', '.join(SHARING)}, got {sharing!r}")
        if (sharing == "layerwise") != (projection is not None):
            raise ValueError("layerwise sharing needs projection=SequenceProjection(seq_len, k), the same module "
                             "for every layer; the other sharing modes make their own and take no projection")
        if projection is not None and (projection.seq_len, projection.k, projection.heads) != (seq_len, k, None):
            raise ValueError(f"projection must map seq_len={seq_len} to k={k} for all heads, got seq_len="
                             f"{projection.seq_len}, k={projection.k}, heads={projection.heads}")
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        self.seq_len, self.k, self.sharing = seq_len, k, sharing
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)                  # W^Q, all heads at once
        self.to_k = nn.Linear(dim, inner, bias=False)                  # W^K
        self.to_v = nn.Linear(dim, inner, bias=False)                  # W^V
        self.to_out = nn.Linear(inner, dim)                            # W^O
        per_head = heads if sharing == "none" else None
        self.E = projection if projection is not None else SequenceProjection(seq_len, k, per_head)
        self.F = SequenceProjection(seq_len, k, per_head) if sharing in ("none", "headwise") else None

    def project_keys_values(self, kv: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """E_i K W_i^K and F_i V W_i^V of Eq. 7 from the key/value input `kv` (B, M, dim): two (B, H, k, d)."""
        F_ = self.E if self.F is None else self.F                      # key-value / layerwise sharing: F = E
        if self.sharing == "none":                                     # E_i per head: project K, V after W^K, W^V
            keys = rearrange(self.to_k(kv), "b m (h d) -> b h m d", h=self.heads)
            values = rearrange(self.to_v(kv), "b m (h d) -> b h m d", h=self.heads)
            return self.E(keys, mask), F_(values, mask)                # (B, H, k, d) each
        ex = self.E(kv, mask)                                          # E X: (B, k, dim)
        fx = ex if F_ is self.E else F_(kv, mask)                      # F X: (B, k, dim)
        keys = rearrange(self.to_k(ex), "b k (h d) -> b h k d", h=self.heads)    # E X W^K = E K W^K
        values = rearrange(self.to_v(fx), "b k (h d) -> b h k d", h=self.heads)  # F V W^V
        return keys, values

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        if causal:
            raise ValueError("Linformer (Wang et al. 2020) defines no causal attention: the projection E mixes every "
                             "position, future ones included, into each projected key; use it in encoders")
        x, kv = attention_inputs(x, context, mask, causal, self.dim, dtype=self.to_out.weight.dtype)   # kv (B, M, D)
        m = kv.shape[1]
        if m > self.seq_len:
            raise ValueError(f"{'context' if context is not None else 'input'}: Linformer was built for at most "
                             f"seq_len={self.seq_len} keys, got {m} (expected shape (B, M<={self.seq_len}, "
                             f"D={self.dim}), got {tuple(kv.shape)})")

        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)      # (B, H, N, d)
        keys, values = self.project_keys_values(kv, mask)                     # (B, H, k, d) each
        out = F.scaled_dot_product_attention(q, keys, values, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))            # (B, N, dim)

    def extra_repr(self) -> str:
        return f"seq_len={self.seq_len}, k={self.k}, sharing={self.sharing!r}"
