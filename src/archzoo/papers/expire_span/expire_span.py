r"""Expire-Span (Sukhbaatar et al., 2021, arXiv:2105.06548, Sec. 4): every memory predicts how long it lives.

A memory h_i (the hidden state of a past position i, as in Transformer-XL's cache) predicts its span (Eq. 3)

    e_i = L \sigma(w^T h_i + b),

L the maximum span. At time t its remaining span is r_ti = e_i - (t - i); the memory is visible through the soft
mask with ramp R (Eq. 4)

    m_ti = max(0, min(1, 1 + r_ti / R)),

which is 1 while the memory is alive, falls linearly over the R steps after it expires and is 0 afterwards, so
the task loss reaches w and b through the ramp. The attention weights are multiplied by the mask and renormalised
(Eq. 5): a_ti = m_ti exp(s_ti) / \sum_j m_tj exp(s_tj). A memory whose mask is 0 can never be seen again (r only
decreases), so it is dropped from the cache. The auxiliary loss (Sec. 4.2) alpha \sum_i e_i / L makes every span
cost something, so only memories that the task needs keep a long one.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import FullAttention, attention_inputs


def expire_mask(spans: Tensor, distance: Tensor, ramp: float) -> Tensor:
    """Eq. 4: m = max(0, min(1, 1 + (e_i - (t - i)) / R)) for spans e (..., M) and distances t - i (N, M)."""
    return (1 + (spans.unsqueeze(-2) - distance) / ramp).clamp(0.0, 1.0)     # (..., N, M)


class ExpireSpanAttention(FullAttention):
    r"""Causal multi-head attention over a cache of past hidden states and the current block, with expiring memories.

    The layer keeps a Transformer-XL cache (Dai et al. 2019, Sec. 3.2) of the inputs it saw in earlier blocks of
    the same sequence (detached, with their absolute positions); `reset()` empties it before a new sequence. The
    projections are `FullAttention`'s; `span_predictor` is w, b of Eq. 3, shared by the heads. `max_span` is L,
    `ramp` R, `alpha` the weight of the span loss. With `expire=False` the layer is the same model with the full
    cache: every memory stays visible and none is dropped (the baseline of the paper's Sec. 5); `prune=False` keeps
    expired memories in the cache (masked to 0), which changes nothing but the memory used.

    After each forward `aux_loss` holds (summed over the blocks since `reset`) the span loss of Sec. 4.2,
    alpha / (B T) \sum_b \sum_i e_i / L over the positions i of the block (T = `tokens`, the sequence length, so
    that it is per token like the task loss); `memory_sizes` lists, for each block, the memories of earlier blocks
    that a sequence can still see (mean over the batch; all of them with the full cache): the memory a per-sequence
    cache needs. The batch's shared cache keeps the union over its sequences.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, *, max_span: int = 64,
                 ramp: float = 8.0, alpha: float = 1e-2, expire: bool = True, prune: bool = True,
                 span_init: float = 1.0):
        super().__init__(dim, heads, dim_head, dropout)
        if max_span <= 0 or ramp <= 0:
            raise ValueError(f"max_span and ramp must be positive, got max_span={max_span}, ramp={ramp}")
        self.max_span, self.ramp, self.alpha, self.expire, self.prune = max_span, ramp, alpha, expire, prune
        self.span_predictor = nn.Linear(dim, 1)                              # w, b of Eq. 3
        nn.init.zeros_(self.span_predictor.weight)
        nn.init.constant_(self.span_predictor.bias, span_init)              # spans start at L sigma(span_init)
        self.aux_loss: Tensor | None = None
        self.reset()

    def reset(self, tokens: int = 1) -> None:
        """Empty the cache and the span loss before a new sequence of `tokens` positions (the loss is divided by it)."""
        self.memory: Tensor | None = None                                   # (B, M, dim) past inputs, detached
        self.positions = torch.zeros(0, dtype=torch.long)                   # (M,) their absolute positions
        self.offset, self.tokens, self.memory_sizes, self.aux_loss, self.alive = 0, tokens, [], None, 0.0

    def spans(self, h: Tensor) -> Tensor:
        """Eq. 3: e_i = L sigmoid(w^T h_i + b), (B, M, dim) -> (B, M)."""
        return self.max_span * torch.sigmoid(self.span_predictor(h).squeeze(-1))

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = True) -> Tensor:
        if context is not None or mask is not None or not causal:
            raise ValueError("Expire-Span attention is causal self-attention over its own cache: it takes no "
                             "context or padding mask, and causal must be True")
        x, _ = attention_inputs(x, None, None, True, self.dim, dtype=self.to_out.weight.dtype)
        b, n = x.shape[:2]
        if self.memory is not None and len(self.memory) != b:
            raise ValueError(f"the cache holds {len(self.memory)} sequences, got a batch of {b}: call reset()")
        kv = x if self.memory is None else torch.cat([self.memory, x], 1)   # (B, M + N, dim)
        positions = torch.cat([self.positions.to(x.device), self.offset + torch.arange(n, device=x.device)])
        distance = (self.offset + torch.arange(n, device=x.device))[:, None] - positions   # (N, M + N), t - i
        self.memory_sizes.append(self.alive)

        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)      # (B, H, N, d)
        k = rearrange(self.to_k(kv), "b m (h d) -> b h m d", h=self.heads)     # (B, H, M + N, d)
        v = rearrange(self.to_v(kv), "b m (h d) -> b h m d", h=self.heads)
        scores = (q @ k.transpose(-2, -1)) * self.dim_head ** -0.5              # s_ti, (B, H, N, M + N)
        weights = scores.masked_fill(distance < 0, float("-inf")).softmax(-1)   # causal softmax
        if self.expire:
            e = self.spans(kv)                                                  # (B, M + N)
            m = expire_mask(e, distance.to(e.dtype), self.ramp)                 # (B, N, M + N), Eq. 4
            weights = weights * m.unsqueeze(1)
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-8)          # Eq. 5
            loss = self.alpha * e[:, -n:].sum() / (self.max_span * b * self.tokens)   # Sec. 4.2, this block
            self.aux_loss = loss if self.aux_loss is None else self.aux_loss + loss
        if self.training and self.dropout:
            weights = nn.functional.dropout(weights, self.dropout)
        out = self.to_out(rearrange(weights @ v, "b h n d -> b n (h d)"))       # (B, N, dim)

        keep = torch.ones_like(positions, dtype=torch.bool)
        self.alive = float(len(positions))
        if self.expire:                                        # memories the next query can still see, per sequence
            alive = expire_mask(e.detach(), (self.offset + n - positions).to(e.dtype)[None], self.ramp).squeeze(1) > 0
            self.alive = float(alive.sum(-1).float().mean())  # (B, M + N) -> mean live memories per sequence
            keep = alive.any(0) if self.prune else keep        # drop memories dead for every sequence
        self.memory, self.positions = kv.detach()[:, keep], positions[keep]
        self.offset += n
        return out
