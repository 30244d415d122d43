r"""Longformer's attention pattern and its banded implementation (Beltagy, Peters & Cohan 2020, arXiv:2004.05150).

The pattern (Sec. 3.1, Fig. 2):

- sliding window (Fig. 2b): token i attends to the w/2 tokens on each side, j = i + k with |k| <= w/2;
- dilated sliding window (Fig. 2c): gaps of size d - 1 between the attended tokens, j = i + d k with |k| <= w/2,
  so the receptive field of l layers grows to l * d * w (each head may have its own d);
- global attention (Fig. 2d): a few chosen tokens attend to every token and every token attends to them.

`attention_pattern` writes this pattern out as the n x n boolean matrix it is equivalent to (for tests and
figures only). `sliding_window_attention` computes the window part (with the global tokens as extra keys)
without ever building that matrix: the sequence is cut into blocks of c queries, and block b attends to the
c + w keys around it (its own block and w/2 on each side), so scores cost n (c + w) = O(n w) instead of n^2
(Sec. 3.2 "Implementation": their "Longformer-chunks" computes the window in overlapping chunks the same way).
A dilated window is a plain window over every d-th token: the d interleaved subsequences i = d m + rho
(rho = 0 .. d-1) each get a plain window of w/2 in m.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def attention_pattern(n: int, window: int, dilation: int = 1, global_mask: Tensor | None = None,
                      mask: Tensor | None = None, causal: bool = False) -> Tensor:
    """The n x n boolean matrix (B, N_query, N_key), True = query i may attend to key j, of Longformer's pattern.

    `window` is w (w/2 on each side), `dilation` d, `global_mask` (B, N) the global tokens, `mask` (B, N) the
    padding mask over keys (True = real token), `causal` keeps j <= i. Builds the dense matrix: for tests and
    figures, never for the attention itself (see `sliding_window_attention`).
    """
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    offset = j - i
    allowed = (offset.abs() <= window // 2 * dilation) & (offset % dilation == 0)      # (N, N) Fig. 2b/c
    allowed = allowed[None]                                                           # (1, N, N)
    if global_mask is not None:
        allowed = allowed | global_mask[:, :, None] | global_mask[:, None, :]         # Fig. 2d: rows and columns
    if mask is not None:
        allowed = allowed & mask[:, None, :]
    if causal:
        allowed = allowed & (offset <= 0)
    return allowed


def band_mask(block: int, radius: int, causal: bool = False, device=None) -> Tensor:
    """(c, c + 2r) bool: query s of a block may attend to key t of its key span (keys from s - r to s + r).

    Key t of the span of a block starting at query position p sits at position p - r + t, query s at p + s, so
    the offset is t - r - s and the window |t - r - s| <= r is s <= t <= s + 2r (causal: t <= s + r).
    """
    s = torch.arange(block, device=device)[:, None]
    t = torch.arange(block + 2 * radius, device=device)[None, :]
    allowed = (t >= s) & (t <= s + (radius if causal else 2 * radius))
    return allowed


def key_spans(t: Tensor, block: int, radius: int) -> Tensor:
    """(..., M, X) -> (..., M / c, c + 2r, X): for each block of c positions, the c + 2r positions around it.

    Zero-padded with r positions at both ends; `unfold` makes the overlapping spans as a strided view and the
    final `movedim` keeps them as one (the caller's `cat` or masking copies it once).
    """
    padded = F.pad(t, (0, 0, radius, radius))                                   # (..., M + 2r, X)
    return padded.unfold(-2, block + 2 * radius, block).movedim(-1, -2)         # (..., M/c, c + 2r, X)


def sliding_window_attention(q: Tensor, k: Tensor, v: Tensor, *, window: int, dilation: int, key_ok: Tensor,
                             global_k: Tensor | None = None, global_v: Tensor | None = None,
                             global_ok: Tensor | None = None, global_pos: Tensor | None = None,
                             causal: bool = False, dropout: float = 0.0, block: int | None = None
                             ) -> tuple[Tensor, Tensor]:
    r"""The windowed part of Longformer attention, banded: softmax over the window keys and the global keys.

        out_i = \sum_{j \in W_d(i) \cup G} softmax_j(q_i . k_j / \sqrt{d_h}) v_j,   W_d(i) = {i + d k : |k| <= w/2}

    q, k, v: (B, N, H, d_h), all heads with the same dilation d. `key_ok` (B, N): keys a window may use (real
    tokens that are not global: a global key is reached through the global columns, never twice).
    `global_k`, `global_v` (B, G, H, d_h): the global tokens' keys and values (the *local* projections, as in the
    paper's implementation), `global_ok` (B, G) which of the G slots hold a token, `global_pos` (B, G) their
    positions (for the causal mask). Returns the output (B, N, H, d_h) and `empty` (B, N), the queries with no
    key at all (their output is 0; the caller decides what they mean).

    Memory: the scores of a block of c queries against its c + w window keys and G global keys,
    n (c + w + G) per head, computed by `scaled_dot_product_attention` block by block (batched).
    """
    b, n, h, dh = q.shape
    radius = window // 2
    c = block or max(radius, 16)                                 # queries per block
    step = dilation * c
    n_pad = -(-n // step) * step                                 # a whole number of blocks in each subsequence
    nb = n_pad // step                                           # blocks per subsequence (named: B may be 0)
    if n_pad != n:
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, n_pad - n)) for t in (q, k, v))
        key_ok = F.pad(key_ok, (0, n_pad - n), value=False)

    # the d interleaved subsequences i = d m + rho become batch entries; blocks of c queries become batch entries
    q_blocks = rearrange(q, "b (nb c rho) h e -> (b rho nb) h c e", c=c, rho=dilation)
    k_sub, v_sub = (rearrange(t, "b (m rho) h e -> b rho m (h e)", rho=dilation) for t in (k, v))
    k_win = rearrange(key_spans(k_sub, c, radius), "b rho nb l (h e) -> (b rho nb) h l e", h=h)   # (B', H, c+2r, d_h)
    v_win = rearrange(key_spans(v_sub, c, radius), "b rho nb l (h e) -> (b rho nb) h l e", h=h)
    ok_sub = rearrange(key_ok, "b (m rho) -> b rho m 1", rho=dilation)
    ok_win = rearrange(key_spans(ok_sub, c, radius), "b rho nb l 1 -> (b rho nb) 1 1 l")          # padding = False
    allowed = band_mask(c, radius, causal, q.device) & ok_win                                      # (B', 1, c, c+2r)

    if global_k is not None and global_k.shape[1] > 0:
        g = global_k.shape[1]
        kg, vg = (rearrange(t, "b g h e -> b 1 1 h g e").expand(b, dilation, nb, h, g, dh).reshape(-1, h, g, dh)
                  for t in (global_k, global_v))                                                   # (B', H, G, d_h)
        g_allowed = rearrange(global_ok, "b g -> b 1 1 1 g")                                       # (B, 1, 1, 1, G)
        if causal:                                                   # a global key j is seen by queries i >= j
            pos = rearrange(torch.arange(n_pad, device=q.device), "(nb c rho) -> rho nb c 1", c=c, rho=dilation)
            g_allowed = g_allowed & (rearrange(global_pos, "b g -> b 1 1 1 g") <= pos)             # (B, rho, nb, c, G)
        g_allowed = g_allowed.expand(b, dilation, nb, c, g).reshape(-1, 1, c, g)
        k_win, v_win = torch.cat((kg, k_win), dim=2), torch.cat((vg, v_win), dim=2)              # (B', H, G+c+2r, d_h)
        allowed = torch.cat((g_allowed, allowed.expand(-1, -1, c, -1)), dim=-1)

    empty = ~allowed.any(-1, keepdim=True)                       # (B', 1, c, 1) no key: attend anywhere, zeroed below
    out = F.scaled_dot_product_attention(q_blocks, k_win, v_win, attn_mask=allowed | empty, dropout_p=dropout)
    out = out.masked_fill(empty, 0.0)
    out = rearrange(out, "(b rho nb) h c e -> b (nb c rho) h e", b=b, rho=dilation, nb=nb)[:, :n]   # (B, N, H, d_h)
    empty = rearrange(empty.expand(-1, 1, c, 1), "(b rho nb) 1 c 1 -> b (nb c rho)", b=b, rho=dilation, nb=nb)[:, :n]
    return out, empty
