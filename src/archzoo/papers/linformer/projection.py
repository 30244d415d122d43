r"""The sequence projections E and F of Linformer (Wang et al. 2020, arXiv:2006.04768, Sec. 4, Eq. 7).

A projection maps a sequence of n rows (keys, values, or the layer input they are computed from) to k rows,
k << n, by a learned linear map along the sequence axis:

    E_i K W_i^K  in R^{k x d},    E_i in R^{k x n}                                        (Eq. 7)

Sec. 4 ("Additional efficiency techniques") shares the projections to save parameters: one E_i per head
(`heads=h`, no sharing), one E per layer for all heads (headwise), one E for keys and values (key-value),
one E for every layer (layerwise: the same `SequenceProjection` module passed to every layer). A shorter
input of m < n rows uses the first m columns, E[:, :m] ("slicing"); padded rows are zeroed before the
projection, so padding never enters the k projected rows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer


@register_layer("linformer_projection", paper="linformer")
class SequenceProjection(nn.Module):
    r"""E (or F) of Eq. 7: `(B, m, C) -> (B, k, C)` with one matrix, or `(B, H, m, C) -> (B, H, k, C)` with one
    matrix per head (`heads=H`), for any m <= `seq_len` (E[:, :m], Sec. 4).

    The weight is stored as the paper writes it, `(k, seq_len)` (or `(H, k, seq_len)`), and starts as the random
    projection of the proof of Theorem 1: i.i.d. N(0, 1/k) entries, so that E preserves norms in expectation
    (Johnson-Lindenstrauss). `mask` `(B, m)` (True = keep) zeroes padded rows before they are mixed.
    """

    def __init__(self, seq_len: int, k: int, heads: int | None = None):
        super().__init__()
        if seq_len < 1 or k < 1:
            raise ValueError(f"seq_len and k must be >= 1, got seq_len={seq_len}, k={k}")
        if heads is not None and heads < 1:
            raise ValueError(f"heads must be None (one E shared by all heads) or >= 1, got {heads}")
        self.seq_len, self.k, self.heads = seq_len, k, heads
        shape = (k, seq_len) if heads is None else (heads, k, seq_len)
        self.weight = nn.Parameter(torch.randn(shape) / math.sqrt(k))     # E, i.i.d. N(0, 1/k)

    def forward(self, t: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.heads is None:
            dims = check_shape(t, "B M C", name="projected input")               # (B, m, C)
        else:
            dims = check_shape(t, "B H M C", name="projected input", H=self.heads)   # (B, H, m, C)
        m = dims["M"]
        if m > self.seq_len:
            raise ValueError(f"projected input: at most seq_len={self.seq_len} positions, got {m}; build the "
                             f"projection with a larger seq_len")
        if mask is not None:
            check_shape(mask, "B M", name="mask", dtype="bool", B=dims["B"], M=m)
            keep = mask[:, :, None] if self.heads is None else mask[:, None, :, None]
            t = t.masked_fill(~keep, 0.0)                                   # padding contributes nothing
        return torch.matmul(self.weight[..., :m], t)                        # E[:, :m] t: (B, [H,] k, C)

    def extra_repr(self) -> str:
        return f"seq_len={self.seq_len}, k={self.k}" + (f", heads={self.heads}" if self.heads else "")
