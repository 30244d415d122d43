r"""FAVOR+ attention (Choromanski et al. 2020, arXiv:2009.14794, Sec. 2): softmax attention in linear time and memory.

Softmax attention is Att(Q, K, V) = D^{-1} A V with A = exp(Q K^T / \sqrt{d}) and D = diag(A 1_L) (Eq. 1); its
causal form uses tril(A) (Eq. 2). Writing A_ij = K(q_i, k_j) = E[phi(q_i)^T phi(k_j)] with random features
(`features.py`) gives the estimate

    \hat{Att}(Q, K, V) = \hat{D}^{-1} (Q' ((K')^T V)),   \hat{D} = diag(Q' ((K')^T 1_L)),   Q' = phi(Q), K' = phi(K)

where the brackets set the order of the products: (K')^T V is (m, d), so nothing of size L x L is ever formed
(`favor_bidirectional`). The causal form replaces (K')^T V by its prefix sums G_i = sum_{j <= i} phi(k_j) v_j^T
(Sec. 2, Fig. 2; `favor_unidirectional`, computed per chunk so that memory stays linear).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import attention_inputs
from ...registry import register_attention
from .features import KERNELS, draw_projection, hyperbolic_log_features, positive_log_features, relu_features


def favor_bidirectional(q_prime: Tensor, k_prime: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Numerator Q' ((K')^T V) and denominator Q' ((K')^T 1_L) of the bidirectional estimate (Sec. 2).

    q_prime (..., N, m), k_prime (..., M, m), v (..., M, e) -> (..., N, e) and (..., N). Cost O((N + M) m e).
    """
    v1 = F.pad(v, (0, 1), value=1.0)                                   # (..., M, e + 1): [V, 1_L]
    kv_t = v1.transpose(-2, -1) @ k_prime                              # (..., e + 1, m) = ((K')^T [V, 1_L])^T
    out = q_prime @ kv_t.transpose(-2, -1)                             # (..., N, e + 1); transposed so that the
    return out[..., :-1], out[..., -1]                                 # gradient of K' comes out contiguous


def favor_unidirectional(q_prime: Tensor, k_prime: Tensor, v: Tensor, chunk_size: int = 128) -> tuple[Tensor, Tensor]:
    """Numerator and denominator of the causal estimate with prefix sums G_i = sum_{j <= i} phi(k_j) [v_j, 1]^T.

    The sequence is cut into chunks of `chunk_size`: a query sees the prefix sum of the earlier chunks (an
    exclusive cumulative sum of one (m, e+1) state per chunk) plus its own chunk's keys j <= i through a
    masked chunk_size x chunk_size block. This is the same sum as the token-by-token prefix sum of the
    paper, regrouped, with memory O(N m e / chunk_size + N chunk_size) instead of O(N m e).
    q_prime, k_prime (..., N, m), v (..., N, e) -> (..., N, e) and (..., N).
    """
    n = q_prime.shape[-2]
    pad = -n % chunk_size if n else chunk_size                         # N = 0: one chunk of padding, output empty
    v1 = F.pad(v, (0, 1), value=1.0)                                   # (..., N, e + 1)
    q, k, v1 = (rearrange(F.pad(t, (0, 0, 0, pad)), "... (c l) f -> ... c l f", l=chunk_size)
                for t in (q_prime, k_prime, v1))                       # (..., C, l, m) and (..., C, l, e + 1)
    state_t = v1.transpose(-2, -1) @ k                                 # (..., C, e + 1, m): one chunk's sum, transposed
    prefix_t = F.pad(state_t.cumsum(-3)[..., :-1, :, :], (0, 0, 0, 0, 1, 0))   # (..., C, e + 1, m): earlier chunks
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    scores = (q @ k.transpose(-2, -1)).masked_fill(~causal, 0.0)       # (..., C, l, l): phi(q_i)^T phi(k_j), j <= i
    out = q @ prefix_t.transpose(-2, -1) + scores @ v1                 # (..., C, l, e + 1)
    out = rearrange(out, "... c l f -> ... (c l) f")[..., :n, :]
    return out[..., :-1], out[..., -1]


@register_attention("performer", paper="performer")
class PerformerAttention(nn.Module):
    r"""Multi-head FAVOR+ attention (Choromanski et al. 2020, arXiv:2009.14794): a drop-in for softmax attention.

    Queries and keys are scaled by d^{-1/4} each so that the kernel is exp(q^T k / \sqrt{d}) (Eq. 1), mapped
    by random features of `kernel` and combined by `favor_bidirectional` or, with `causal=True`,
    `favor_unidirectional`. The projection W (m x dim_head, shared by the heads) is a buffer, saved with the
    weights; `feature_redraw_interval` redraws it every that many training forward passes (Sec. 4: redrawing
    helps training), `redraw_features()` does it by hand.

    - `kernel`: "softmax" (positive features, FAVOR+; default), "softmax_hyp" (positive hyperbolic),
      "softmax_trig" (trigonometric sin/cos, FAVOR without the +; unstable, kept to show why) or "relu"
      (generalized attention, Performer-ReLU).
    - `nb_features` m, `orthogonal` (block-orthogonal W, Sec. 2.4) and `scaling` ("chi" or "sqrt_d") of the rows.
    - Numerical stabilization: log-features are shifted by their maximum (per query row; over all keys and
      features for the keys), a constant that cancels between numerator and denominator, so the estimate
      is unchanged (the tests check it). `eps` is then added to every feature, as the official
      implementation's "numerical stabilizer" (1e-6 there, 1e-4 in performer-pytorch); 0 keeps the
      estimator unbiased. `kernel_eps` is the ReLU kernel's offset (0.001 officially).
    - `chunk_size` of the causal form (default: the power of two nearest sqrt(m (dim_head + 1)), 128 for
      m = 256, dim_head = 64) only regroups the prefix sums: the result does not depend on it.
    - Padding masks drop the masked keys from both sums (the estimate of the masked softmax); `context` gives
      cross-attention (bidirectional only); there are no attention weights, so `dropout` must be 0.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, nb_features: int = 256,
                 kernel: str = "softmax", orthogonal: bool = True, scaling: str = "chi",
                 feature_redraw_interval: int | None = 1000, chunk_size: int | None = None, eps: float = 0.0,
                 kernel_eps: float = 1e-3):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if dropout:
            raise ValueError("FAVOR+ never forms the attention matrix, so it has no attention weights to drop out: "
                             f"dropout must be 0, got {dropout}")
        if feature_redraw_interval is not None and feature_redraw_interval < 1:
            raise ValueError(f"feature_redraw_interval must be >= 1 or None, got {feature_redraw_interval}")
        if chunk_size is None:                   # balances the N m d / chunk states against the N chunk blocks
            chunk_size = 2 ** round(math.log2(math.sqrt(nb_features * (dim_head + 1))))
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        self.nb_features, self.kernel, self.orthogonal, self.scaling = nb_features, kernel, orthogonal, scaling
        self.feature_redraw_interval, self.chunk_size = feature_redraw_interval, chunk_size
        self.eps, self.kernel_eps = eps, kernel_eps
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.register_buffer("projection", draw_projection(nb_features, dim_head, orthogonal=orthogonal,
                                                           scaling=scaling))   # W: (m, dim_head)
        self.calls_since_redraw = 0

    @torch.no_grad()
    def redraw_features(self) -> None:
        """Draw a new projection W (from the global RNG) in place."""
        self.projection.copy_(draw_projection(self.nb_features, self.dim_head, orthogonal=self.orthogonal,
                                              scaling=self.scaling))
        self.calls_since_redraw = 0

    def features(self, x: Tensor, is_query: bool, mask: Tensor | None = None) -> Tensor:
        """phi(x) of this attention's kernel, stabilized: (B, H, N, dim_head) -> (B, H, N, m or 2m).

        The log-features are shifted by their maximum: per query row for queries, over every real key and
        feature of a (batch, head) for keys. Both shifts are constants that cancel in D^{-1}, so the
        estimate is unchanged, and no exp overflows. Masked keys get zero features.
        """
        x = x * self.dim_head ** -0.25                                  # exp(q^T k / sqrt(d)) = SM(q', k')
        omega = self.projection.to(x.dtype)
        keep = None if mask is None or is_query else mask[:, None, :, None]       # (B, 1, M, 1)
        if self.kernel == "relu":
            phi = relu_features(x, omega, self.kernel_eps)
            return phi if keep is None else phi * keep.to(phi.dtype)
        if self.kernel == "softmax_trig":                              # h(x) = exp(|x|^2/2), f = (sin, cos)
            u = x @ omega.transpose(0, 1)                              # (B, H, N, m)
            f = torch.cat([torch.sin(u), torch.cos(u)], dim=-1)        # (B, H, N, 2m)
            log_phi = 0.5 * x.pow(2).sum(-1, keepdim=True) - 0.5 * math.log(self.nb_features)   # log h, (B, H, N, 1)
        else:                                                          # positive: the whole feature is exp(.)
            f = None
            log_phi = (positive_log_features if self.kernel == "softmax" else hyperbolic_log_features)(x, omega)
        if keep is not None:                                           # log 0 for masked keys: never inf * 0
            log_phi = log_phi.masked_fill(~keep, -torch.inf)
        if log_phi.shape[-2]:                                          # an empty sequence has nothing to shift
            shift = log_phi.detach().amax(-1 if is_query else (-2, -1), keepdim=True)
            shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))   # every key masked
            log_phi.sub_(shift)                                        # in place: the product keeps no output
        phi = torch.exp(log_phi)
        phi = phi if f is None else phi * f
        if self.eps:
            phi = phi + self.eps if keep is None else phi + self.eps * keep.to(phi.dtype)
        return phi

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        if causal and context is not None:
            raise ValueError("the causal (prefix-sum) form of FAVOR+ is self-attention: it takes no context")
        x, kv = attention_inputs(x, context, mask, causal, self.dim, dtype=self.to_out.weight.dtype)   # kv (B, M, D)
        b, n, _ = x.shape
        if self.training and self.feature_redraw_interval is not None:
            if self.calls_since_redraw >= self.feature_redraw_interval:
                self.redraw_features()
            self.calls_since_redraw += 1

        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)      # (B, H, N, d)
        k = rearrange(self.to_k(kv), "b m (h d) -> b h m d", h=self.heads)     # (B, H, M, d)
        v = rearrange(self.to_v(kv), "b m (h d) -> b h m d", h=self.heads)     # (B, H, M, d)
        q_prime = self.features(q, is_query=True)                              # (B, H, N, m)
        k_prime = self.features(k, is_query=False, mask=mask)                  # (B, H, M, m)
        if causal:
            num, den = favor_unidirectional(q_prime, k_prime, v, self.chunk_size)
        else:
            num, den = favor_bidirectional(q_prime, k_prime, v)
        if self.kernel != "softmax_trig":                                      # positive: den > 0 unless underflow
            den = den.clamp_min(torch.finfo(den.dtype).tiny)                   # (a query with no key: output 0)
        out = num / den.unsqueeze(-1)                                          # \hat{D}^{-1} (...), (B, H, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))             # (B, N, dim)


@register_attention("performer_relu", paper="performer")
class PerformerReLUAttention(PerformerAttention):
    """Performer-ReLU: generalized attention with f = ReLU features (Sec. 2.2, Sec. 4); `PerformerAttention`
    with `kernel="relu"`."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, **kw):
        super().__init__(dim, heads, dim_head, dropout, **{"kernel": "relu", **kw})
