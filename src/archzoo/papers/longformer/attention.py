r"""Longformer self-attention: sliding (dilated) window + global attention with its own projections
(Beltagy, Peters & Cohan 2020, arXiv:2004.05150, Sec. 3.1).

    y = LongformerAttention(dim, heads=8, dim_head=64, window=512, dilation=1, global_tokens=(0,))(x)
    y = attn(x, mask=padding_mask, global_mask=question_tokens)        # per-call global tokens (B, N) bool
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import attention_inputs
from ...core.checks import check_shape
from ...registry import register_attention
from .sliding_window import sliding_window_attention


@register_attention("longformer", paper="longformer")
class LongformerAttention(nn.Module):
    r"""Longformer's attention (Beltagy et al. 2020, arXiv:2004.05150, Sec. 3.1, Fig. 2b-d).

    Every token attends to a sliding window of w/2 tokens on each side, optionally dilated by d (per head:
    `dilation` may list one d per head, Sec. 3.1 "Dilated Sliding Window"), and to a few *global* tokens;
    the global tokens attend to every token. Global attention has its own projections (Sec. 3.1 "Linear
    Projections for Global Attention"): the scores of a global token's row use Q_g, K_g, V_g
    (`to_q_global`, `to_k_global`, `to_v_global`), the window and the columns of the global tokens in the
    other rows use Q_s, K_s, V_s (`to_q`, `to_k`, `to_v`), as in the authors' and Hugging Face's code. As in the
    paper, Q_g, K_g, V_g start as copies of Q_s, K_s, V_s and are trained separately:

        window rows:  out_i = softmax_j(Q_s x_i . K_s x_j / \sqrt{d_h}) V_s x_j,  j in W_d(i) u G
        global rows:  out_g = softmax_j(Q_g x_g . K_g x_j / \sqrt{d_h}) V_g x_j,  j = 1 .. n

    Cost O(n (w + |G|)) time and memory (`sliding_window_attention`, banded); the n x n matrix is never built.
    With Q_g, K_g, V_g equal to Q_s, K_s, V_s this is full attention under the mask `attention_pattern`.

    - `window`: w, even (the paper uses 512 for its pretrained models, 32..512 by layer for character LM).
    - `dilation`: d, an int or one int per head (the paper's char-LM uses d = 2 on 2 heads of the top layers).
    - `global_tokens`: positions given global attention when `forward` gets no `global_mask` (negative
      positions count from the end); default `(0,)`, the [CLS]/<s> token of classification (Sec. 6).
      `()` is window-only attention.
    - `qkv_bias`: biases on the six query/key/value projections (RoBERTa and Hugging Face have them; off by
      default as in `FullAttention`).
    - `mask` (B, N) bool padding mask, True = real token: padded tokens are neither keys nor global.
    - `global_mask` (B, N) bool in `forward` (or `model.global_tokens(model, global_mask)` around a whole
      model) overrides `global_tokens` for one call, e.g. the question tokens of QA (Sec. 6).
    - `causal=True`: every query sees only keys j <= i, in the window (the paper's autoregressive
      character LM) and in the global rows and columns (global tokens then see only their past).
    - Cross-attention (`context`) is not part of the paper's attention and raises `ValueError`.
    - An empty sequence (N = 0) gives an empty output; an empty batch too.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, window: int = 512,
                 dilation: int | Sequence[int] = 1, global_tokens: Sequence[int] = (0,), qkv_bias: bool = False):
        super().__init__()
        if window < 2 or window % 2:
            raise ValueError(f"window must be even and >= 2 (w/2 tokens on each side), got {window}")
        dilations = [dilation] * heads if isinstance(dilation, int) else list(dilation)
        if len(dilations) != heads or any(not isinstance(d, int) or d < 1 for d in dilations):
            raise ValueError(f"dilation must be a positive int or one per head ({heads}), got {dilation}")
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        self.window, self.dilation, self.global_tokens = window, dilations, tuple(int(p) for p in global_tokens)
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=qkv_bias)               # Q_s
        self.to_k = nn.Linear(dim, inner, bias=qkv_bias)               # K_s
        self.to_v = nn.Linear(dim, inner, bias=qkv_bias)               # V_s
        self.to_q_global = nn.Linear(dim, inner, bias=qkv_bias)        # Q_g
        self.to_k_global = nn.Linear(dim, inner, bias=qkv_bias)        # K_g
        self.to_v_global = nn.Linear(dim, inner, bias=qkv_bias)        # V_g
        self.to_out = nn.Linear(inner, dim)                            # W^O
        for g, s in ((self.to_q_global, self.to_q), (self.to_k_global, self.to_k), (self.to_v_global, self.to_v)):
            g.load_state_dict(s.state_dict())                          # "initialized with values that match Q_s, ..."
        self.head_groups = {d: [h for h in range(heads) if dilations[h] == d] for d in sorted(set(dilations))}
        self.call_global_mask: Tensor | None = None                  # set by `model.global_tokens(...)`

    def extra_repr(self) -> str:
        dil = self.dilation[0] if len(set(self.dilation)) == 1 else self.dilation
        return f"window={self.window}, dilation={dil}, global_tokens={self.global_tokens}"

    def default_global_mask(self, b: int, n: int, device=None) -> Tensor:
        """(B, N) bool with `global_tokens` set (negative positions count from the end)."""
        g = torch.zeros(b, n, dtype=torch.bool, device=device)
        for p in self.global_tokens:
            if not -n <= p < n:
                raise ValueError(f"global token position {p} is outside a sequence of length {n}")
            g[:, p] = True
        return g

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None, causal: bool = False,
                global_mask: Tensor | None = None) -> Tensor:
        if context is not None:
            raise ValueError("Longformer attention is self-attention only: the paper defines no sliding-window "
                             "cross-attention (its encoder-decoder uses full cross-attention); pass context=None")
        x, _ = attention_inputs(x, None, mask, causal, self.dim, dtype=self.to_out.weight.dtype)
        b, n, _ = x.shape
        if n == 0:                                          # no token, so no global position either: an empty output
            return self.to_out(x.new_zeros(b, 0, self.heads * self.dim_head))
        keep = torch.ones(b, n, dtype=torch.bool, device=x.device) if mask is None else mask
        if global_mask is None:
            global_mask = self.call_global_mask
        if global_mask is None:
            global_mask = self.default_global_mask(b, n, x.device)
        else:
            check_shape(global_mask, "B N", name="global_mask", dtype="bool", B=b, N=n)
        global_mask = global_mask & keep                                       # padding is never global

        q = rearrange(self.to_q(x), "b n (h e) -> b n h e", h=self.heads)      # (B, N, H, d_h)
        k = rearrange(self.to_k(x), "b n (h e) -> b n h e", h=self.heads)
        v = rearrange(self.to_v(x), "b n (h e) -> b n h e", h=self.heads)

        # the G global slots of each sample: positions first, slots past a sample's own count are empty
        counts = global_mask.sum(1)                                            # (B,)
        g = int(counts.max()) if global_mask.numel() else 0
        g_pos = torch.sort(global_mask.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :g]  # (B, G)
        g_ok = torch.arange(g, device=x.device)[None, :] < counts[:, None]                              # (B, G)
        rows = torch.arange(b, device=x.device)[:, None]

        dropout = self.dropout if self.training else 0.0
        outs, empties = [], []
        for d, heads in self.head_groups.items():                             # one pass per dilation value
            sel = slice(None) if len(heads) == self.heads else heads
            out_d, empty_d = sliding_window_attention(
                q[:, :, sel], k[:, :, sel], v[:, :, sel], window=self.window, dilation=d,
                key_ok=keep & ~global_mask, global_k=k[rows, g_pos][:, :, sel], global_v=v[rows, g_pos][:, :, sel],
                global_ok=g_ok, global_pos=g_pos, causal=causal, dropout=dropout)
            outs.append(out_d)
            empties.append(empty_d)
        out = torch.cat(outs, dim=2)                                           # (B, N, H, d_h), heads grouped by d
        if len(self.head_groups) > 1:
            order = [h for heads in self.head_groups.values() for h in heads]
            out = out[:, :, torch.argsort(torch.tensor(order, device=x.device))]
        out = rearrange(out, "b n h e -> b n (h e)")
        empty = torch.stack(empties).all(0)                                    # (B, N) no key in any head

        if g > 0:                                                              # global rows: Q_g, K_g, V_g
            out = self._global_rows(x, out, keep, g_pos, g_ok, causal, dropout)
            empty = empty & ~global_mask
        out = self.to_out(out)                                                 # (B, N, dim)
        return out.masked_fill(empty[..., None], 0.0) if bool(empty.any()) else out

    def _global_rows(self, x: Tensor, out: Tensor, keep: Tensor, g_pos: Tensor, g_ok: Tensor, causal: bool,
                     dropout: float) -> Tensor:
        """Overwrite the rows of the global tokens with their attention to every token (Q_g, K_g, V_g)."""
        b, n, inner = out.shape
        rows = torch.arange(b, device=x.device)[:, None]
        q_g = rearrange(self.to_q_global(x[rows, g_pos]), "b g (h e) -> b h g e", h=self.heads)   # (B, H, G, d_h)
        k_g = rearrange(self.to_k_global(x), "b n (h e) -> b h n e", h=self.heads)                # (B, H, N, d_h)
        v_g = rearrange(self.to_v_global(x), "b n (h e) -> b h n e", h=self.heads)
        allowed = rearrange(keep, "b n -> b 1 1 n")                                               # (B, 1, 1, N)
        if causal:
            allowed = allowed & (torch.arange(n, device=x.device) <= g_pos[:, None, :, None])    # (B, 1, G, N)
        out_g = F.scaled_dot_product_attention(q_g, k_g, v_g, attn_mask=allowed, dropout_p=dropout)
        out_g = rearrange(out_g, "b h g e -> b g (h e)")                                          # (B, G, inner)
        index = torch.where(g_ok, g_pos, n)                       # empty slots write to a spare row n, cut below
        out = torch.cat((out, out.new_zeros(b, 1, inner)), dim=1)
        return out.scatter(1, index[..., None].expand(-1, -1, inner), out_g)[:, :n]
