r"""The sparse QKV layer (Jaszczur et al. 2021, arXiv:2111.12763, Sec. 3.2, Fig. 4).

Q, K and V are three dense d x d layers; with sparse FFN they dominate decoding. The paper replaces them by a
multiplicative layer shared by Q, K and V, followed by a small convolution for each.

Multiplicative layer: the output is S modules of M = d_out / S values, and

    y_{s,m} = \sum_k x_k D_{k,s} E_{k,m}              D: d x S,  E: d x M             (Sec. 3.2)

i.e. a dense layer whose weight is the product W_{k,(s,m)} = D_{k,s} E_{k,m}, with d (S + M) parameters instead
of d^2 (`MultiplicativeDense`). It can still represent any permutation of its input (Fig. 4a).

Convolution: the output (B, N, S, M) is read as an image of N x S pixels with M channels; a 2-D convolution
with M filters and an F x F kernel lets each output module look at F neighbouring modules in the last F tokens
(causal along the length, zero-padded along the modules). Q and K use F x F, V uses F x 1 (the authors' trax
`MultiplicativeConvCausalAttention`, F = 3, S = the number of heads). The output projection W^O stays dense.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import attention_inputs, padding_keep
from ...registry import register_attention, register_layer


@register_layer("MultiplicativeDense", paper="terraformer")
class MultiplicativeDense(nn.Module):
    """y_{s,m} = sum_k x_k D_{k,s} E_{k,m} + b_{s,m} (Sec. 3.2): (..., dim) -> (..., S, M).

    `dense_weight()` is the equivalent dense weight W (dim, S * M), W_{k,(s,m)} = D_{k,s} E_{k,m}.
    Initialisation as in the authors' code: D ~ N(0, 0.5^2), E Glorot-uniform, b = 0.
    """

    def __init__(self, dim: int, modules: int, module_dim: int):
        super().__init__()
        self.dim, self.n_modules, self.module_dim = dim, modules, module_dim
        self.D = nn.Parameter(torch.randn(dim, modules) * 0.5)                 # (d, S)
        bound = math.sqrt(6 / (dim + module_dim))
        self.E = nn.Parameter(torch.empty(dim, module_dim).uniform_(-bound, bound))   # (d, M)
        self.bias = nn.Parameter(torch.zeros(modules, module_dim))             # (S, M)

    def dense_weight(self) -> Tensor:                                          # (d, S * M)
        return rearrange(self.D[:, :, None] * self.E[:, None, :], "k s m -> k (s m)")

    def forward(self, x: Tensor) -> Tensor:                                    # (..., d) -> (..., S, M)
        return (x.unsqueeze(-2) * self.D.T) @ self.E + self.bias               # (x . D_{:,s}) E for every s


class ModuleConv(nn.Module):
    """The convolution of Sec. 3.2 on (B, N, S, M): M channels, a (F_len x F_mod) kernel over (length, modules),
    causal along the length (left zero padding of F_len - 1 tokens), 'same' zero padding along the modules."""

    def __init__(self, module_dim: int, length_kernel: int = 3, module_kernel: int = 3):
        super().__init__()
        if length_kernel < 1 or module_kernel < 1 or module_kernel % 2 == 0:
            raise ValueError(f"length_kernel must be >= 1 and module_kernel odd, got {length_kernel} and "
                             f"{module_kernel}")
        self.length_kernel = length_kernel
        self.conv = nn.Conv2d(module_dim, module_dim, (length_kernel, module_kernel), padding=(0, module_kernel // 2))

    def forward(self, u: Tensor, past: Tensor | None = None) -> Tensor:
        """u (B, N, S, M) -> (B, N, S, M); `past` (B, F_len - 1, S, M) are the inputs before u (zeros if None)."""
        if u.shape[1] == 0:
            return u                                                            # no token: nothing to convolve
        if past is None:
            past = u.new_zeros(u.shape[0], self.length_kernel - 1, *u.shape[2:])
        image = rearrange(torch.cat([past, u], dim=1), "b n s m -> b m n s")   # N x S pixels, M channels
        return rearrange(self.conv(image), "b m n s -> b n s m")


@register_attention("terraformer_sparse_qkv", paper="terraformer")
class SparseQKVAttention(nn.Module):
    r"""Multi-head attention whose Q, K, V come from the sparse QKV layer of Sec. 3.2 (module docstring):

        u = Mult(x)  (B, N, S, M),   Q = Conv_Q(u),  K = Conv_K(u),  V = Conv_V(u),   head h = module group h

    then softmax(Q K^T / sqrt(d_head)) V and a dense W^O. `modules` S (default `heads`) must divide
    heads * dim_head; each head takes S / heads consecutive modules. `length_kernel` F (3).

    The convolution is causal along the length in both modes (Q_i, K_i, V_i see tokens i - F + 1 .. i), so the
    projections are the same with `causal=True` (the paper's decoder) and `causal=False` (bidirectional attention
    over them). With a padding `mask` (B, N), padded tokens enter the convolution as zeros and are masked as keys.
    There is no cross-attention form: `context` raises a ValueError. `step` computes one new token from a cache
    (cached decoding); see `archzoo.papers.terraformer.decoding`.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, *,
                 modules: int | None = None, length_kernel: int = 3):
        super().__init__()
        inner = heads * dim_head
        modules = modules or heads
        if inner % modules:
            raise ValueError(f"modules ({modules}) must divide heads * dim_head ({inner})")
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        self.n_modules, self.module_dim, self.length_kernel = modules, inner // modules, length_kernel
        self.mult = MultiplicativeDense(dim, modules, self.module_dim)          # shared by Q, K, V
        self.conv_q = ModuleConv(self.module_dim, length_kernel, 3)
        self.conv_k = ModuleConv(self.module_dim, length_kernel, 3)
        self.conv_v = ModuleConv(self.module_dim, length_kernel, 1)
        self.to_out = nn.Linear(inner, dim)                                     # W^O, dense

    def qkv(self, u: Tensor, past: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Q, K, V (B, H, N, d_head) from the multiplicative outputs u (B, N, S, M) (and those before, `past`)."""
        return tuple(rearrange(rearrange(conv(u, past), "b n s m -> b n (s m)"), "b n (h d) -> b h n d", h=self.heads)
                     for conv in (self.conv_q, self.conv_k, self.conv_v))

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        if context is not None:
            raise ValueError("SparseQKVAttention is self-attention (Sec. 3.2 convolves over the sequence's own "
                             "tokens): pass context=None")
        x = attention_inputs(x, None, mask, causal, self.dim, dtype=self.to_out.weight.dtype)[0]
        n = x.shape[1]
        u = self.mult(x)                                                        # (B, N, S, M)
        if mask is not None:
            u = u * mask[:, :, None, None]                                      # padding enters the conv as 0
        q, k, v = self.qkv(u)                                                   # (B, H, N, d)
        keep, empty = padding_keep(mask, causal, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=causal and mask is None,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))               # (B, N, dim)
        if empty is not None:
            out = out.masked_fill(rearrange(empty, "b 1 n 1 -> b n 1"), 0.0)
        return out

    def step(self, x: Tensor, past: Tensor | None) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
        """One token x (B, 1, dim): its (q, k, v), each (B, H, 1, d_head), and the new `past`, the last F - 1
        multiplicative outputs (B, F - 1, S, M) (None or shorter at the start: zero-padded)."""
        u = self.mult(x)                                                        # (B, 1, S, M)
        window = u if past is None else torch.cat([past, u], dim=1)
        keep = self.length_kernel - 1
        pad = keep - (window.shape[1] - 1)
        if pad > 0:
            window = torch.cat([window.new_zeros(window.shape[0], pad, *window.shape[2:]), window], dim=1)
        q, k, v = self.qkv(window[:, -1:], window[:, :-1])
        return (q, k, v), window[:, window.shape[1] - keep:]
