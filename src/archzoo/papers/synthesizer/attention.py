r"""Synthesizer attention and mixtures of synthesizers (Tay et al. 2020, arXiv:2005.00743, Sec. 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import attention_inputs
from ...core.checks import check_shape
from ...registry import register_attention
from .synthesizers import SYNTHESIZERS, build_synthesizer

COMPONENTS = (*SYNTHESIZERS, "vanilla")


@register_attention("synthesizer", paper="synthesizer")
class SynthesizerAttention(nn.Module):
    r"""Synthesized attention (Tay et al. 2020, arXiv:2005.00743, Sec. 3): the weights come from a synthesizing
    function S instead of query-key dot products,

        Y_h = softmax(S_h(X)) G_h(X),     output = Concat(Y_1, ..., Y_H) W^O                    (Eq. 3)

    where G (`to_v`) is the value projection and W^O (`to_out`) the output projection of multi-head attention.
    `synthesizer` names S (see synthesizers.py):

    - "dense" (Eq. 1-2): each token predicts its row of logits from itself, B_i = F(X_i);
    - "random": a learned (or, with `fixed_random=True`, fixed) l x l matrix R, the same for every input;
    - "factorized_dense": C = H_A(A) * H_B(B) with A, B = F_A(X_i), F_B(X_i) and a b = l (`factors=(a, b)`);
    - "factorized_random": R = R_1 R_2^T with rank `k` (8 in the paper);
    - "vanilla": dot-product attention, Q K^T / sqrt(d_h) (Vaswani et al. 2017), with `to_q` and `to_k`;
    - a mixture joined by "+", e.g. "random+vanilla" (Sec. 3.1, Mixture of Synthesizers):

          Y = softmax(\alpha_1 S_1(X) + ... + \alpha_N S_N(X)) G(X),     \sum_n \alpha_n = 1

      with \alpha = softmax(w), w learned (`learn_mixture=True`, the default) from `mixture_weights` (uniform by
      default), or fixed (`learn_mixture=False`; a weight may then be 0).

    The projections are named as in `core.FullAttention` (`to_q`, `to_k`, `to_v`, `to_out`), so "vanilla", or a
    mixture with weight 1 on "vanilla", is FullAttention with the same weights.

    `seq_len` is l, the length the logits are made for; a sequence of N <= l tokens uses the first N positions.
    Masks act on the synthesized logits before the softmax: `causal=True` removes j > i (the paper's decoders),
    `mask` (B, N) removes padded keys; a query with no key left gets a zero output, as in FullAttention. The
    synthesizer is self-attention only: its logits are made for the positions of x, so `context` raises.

    Computation: each term of the mixed logits is either bilinear (dense: position-indexed keys; factorized
    random: R_1 R_2^T; vanilla: Q K^T) or a stored N x N matrix (random R, factorized dense C). The bilinear
    terms are concatenated into one query and one key, scaled by \alpha, so that without a stored term a single
    `scaled_dot_product_attention` call (scale 1) computes softmax(\sum \alpha S) V and never forms an N x N
    matrix. With one, the stored terms are added to q k^T and the softmax is written out (the fused kernels do
    not differentiate an additive bias); a random synthesizer without padding then takes one softmax(R) for the
    whole batch. `logits(x)` writes the mixed logits out (tests, figures).
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, *, seq_len: int,
                 synthesizer: str = "dense", fixed_random: bool = False, k: int = 8,
                 factors: Sequence[int] | None = None, mixture_weights: Sequence[float] | None = None,
                 learn_mixture: bool = True):
        super().__init__()
        components = tuple(synthesizer.split("+"))
        unknown = [c for c in components if c not in COMPONENTS]
        if unknown or len(set(components)) != len(components):
            raise ValueError(f"synthesizer must be one of {', '.join(COMPONENTS)} or distinct ones joined by '+' "
                             f"(e.g. 'random+vanilla'), got {synthesizer!r}")
        if seq_len < 1:
            raise ValueError(f"seq_len (the synthesizer's length l) must be >= 1, got {seq_len}")
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        self.seq_len, self.components = seq_len, components
        inner = heads * dim_head
        if "vanilla" in components:
            self.to_q = nn.Linear(dim, inner, bias=False)                         # W^Q
            self.to_k = nn.Linear(dim, inner, bias=False)                         # W^K
        self.to_v = nn.Linear(dim, inner, bias=False)                             # G, the values
        self.to_out = nn.Linear(inner, dim)                                       # W^O
        self.synthesizers = nn.ModuleDict({
            c: build_synthesizer(c, dim, heads, dim_head, seq_len, fixed_random=fixed_random, k=k,
                                 factors=tuple(factors) if factors is not None else None)
            for c in components if c != "vanilla"})
        if len(components) > 1:
            w = torch.full((len(components),), 1.0 / len(components))
            if mixture_weights is not None:
                w = torch.as_tensor(mixture_weights, dtype=torch.float32)
                if w.shape != (len(components),) or bool((w < 0).any()) or not float(w.sum()) > 0:
                    raise ValueError(f"mixture_weights must be {len(components)} non-negative weights (one per "
                                     f"component of {synthesizer!r}), not all zero; got {list(mixture_weights)}")
                if learn_mixture and bool((w == 0).any()):
                    raise ValueError("a mixture weight of 0 cannot be learned (its logit is -inf): "
                                     "pass learn_mixture=False to fix the weights")
            log_alpha = torch.log(w / w.sum())                                    # softmax(log alpha) = alpha
            if learn_mixture:
                self.mixture_logits = nn.Parameter(log_alpha)
            else:
                self.register_buffer("mixture_logits", log_alpha)

    def alpha(self) -> Tensor:
        """\alpha, one weight per component, summing to 1 (Sec. 3.1, Mixture of Synthesizers); (1.0,) for a single
        synthesizer."""
        if len(self.components) == 1:
            return torch.ones(1, device=self.to_v.weight.device, dtype=self.to_v.weight.dtype)
        return self.mixture_logits.softmax(0)

    def _dot_product(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads) / math.sqrt(self.dim_head)
        k = rearrange(self.to_k(x), "b n (h d) -> b h n d", h=self.heads)
        return q, k                                                               # (B, H, N, d_h) each

    def logits(self, x: Tensor) -> Tensor:
        r"""\sum_n \alpha_n S_n(X), written out: (B, H, N, N), before any mask."""
        self._check(x)
        total = 0.0
        for alpha, c in zip(self.alpha(), self.components):
            if c == "vanilla":
                q, k = self._dot_product(x)
                total = total + alpha * (q @ k.transpose(-1, -2))
            else:
                total = total + alpha * self.synthesizers[c].logits(x)
        return total.expand(x.shape[0], -1, -1, -1)

    def _terms(self, x: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        r"""(q, k, bias) with q k^T + bias = \sum_n \alpha_n S_n(X): bilinear terms concatenated, the others summed
        (None where there is no term of that kind)."""
        b = x.shape[0]
        qs, ks, bias = [], [], None
        for alpha, c in zip(self.alpha(), self.components):
            if c == "vanilla":
                q, k = self._dot_product(x)
            elif self.synthesizers[c].bilinear is not None:
                q, k = self.synthesizers[c].bilinear(x)
            else:
                s = alpha * self.synthesizers[c].logits(x)                        # (1 or B, H, N, N)
                bias = s if bias is None else bias + s
                continue
            qs.append(alpha * q.expand(b, -1, -1, -1))
            ks.append(k.expand(b, -1, -1, -1))
        if not qs:
            return None, None, bias
        return torch.cat(qs, -1), torch.cat(ks, -1), bias                         # (B, H, N, E) each

    def _check(self, x: Tensor) -> dict:
        dims = check_shape(x, "B N D", D=self.dim)
        if dims["N"] > self.seq_len:
            raise ValueError(f"input: expected at most seq_len={self.seq_len} tokens (the synthesizer's length l), "
                             f"got shape {tuple(x.shape)}")
        return dims

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        if context is not None:
            raise ValueError("the Synthesizer (Tay et al. 2020) defines self-attention only: its logits are "
                             "synthesized for the positions of x, so there is no cross-attention form (pass "
                             "context=None and use FullAttention for encoder-decoder attention)")
        dims = self._check(x)
        b, n = dims["B"], dims["N"]
        x, _ = attention_inputs(x, None, mask, causal, self.dim, dtype=self.to_out.weight.dtype)

        v = rearrange(self.to_v(x), "b n (h d) -> b h n d", h=self.heads)        # G(X): (B, H, N, d_h)
        q, k, bias = self._terms(x)                                               # q k^T + bias: the logits
        keep, empty = None, None
        if mask is not None:
            keep = rearrange(mask, "b m -> b 1 1 m")                              # (B, 1, 1, N)
            if causal:
                keep = keep & torch.ones(n, n, dtype=torch.bool, device=x.device).tril()   # (B, 1, N, N)
            empty = ~keep.any(-1, keepdim=True)                                   # a query with no key at all
            keep = keep | empty                                                   # attend anywhere, zeroed below
        elif causal and bias is not None:
            keep = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()     # (N, N)
        p_drop = self.dropout if self.training else 0.0

        if bias is None:                        # bilinear logits only: one fused kernel, no N x N tensor stored
            e = q.shape[-1]                     # the fused kernels want one head size for q, k and v
            if e < self.dim_head:
                q, k = F.pad(q, (0, self.dim_head - e)), F.pad(k, (0, self.dim_head - e))
            elif e > self.dim_head:
                v = F.pad(v, (0, e - self.dim_head))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p_drop, scale=1.0,
                                                 is_causal=causal and keep is None)[..., :self.dim_head]
        else:                                   # a stored N x N term (R or C): the softmax written out
            logits = bias if q is None else q @ k.transpose(-1, -2) + bias       # (1 or B, H, N, N)
            if keep is not None:
                logits = logits.masked_fill(~keep, float("-inf"))
            attn = logits.softmax(-1)                                             # (1 or B, H, N, N)
            if p_drop > 0:                      # each sample drops its own weights
                attn = F.dropout(attn.expand(b, -1, -1, -1), p_drop)
            if attn.shape[0] == 1:              # one softmax(R) for the whole batch: one matmul per head
                out = torch.einsum("hnm,bhmd->bhnd", attn[0], v)                  # (B, H, N, d_h)
            else:
                out = attn @ v
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))                # (B, N, dim)
        if empty is not None:
            out = out.masked_fill(rearrange(empty, "b 1 n 1 -> b n 1"), 0.0)
        return out
