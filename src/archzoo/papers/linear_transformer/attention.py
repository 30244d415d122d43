r"""Linear attention (Katharopoulos, Vyas, Pappas & Fleuret 2020, arXiv:2006.16236, Sec. 3).

Softmax attention weighs value j for query i by sim(q_i, k_j) = exp(q_i^T k_j / \sqrt{d}) (Eq. 2-3). Any kernel
sim(q, k) = \phi(q)^T \phi(k) gives the same kind of weighted average (Eq. 4), and then the associativity of the
matrix product moves the sum over keys inside:

    V'_i = \phi(Q_i)^T \sum_j \phi(K_j) V_j^T / \phi(Q_i)^T \sum_j \phi(K_j)                        (Eq. 5)

so the (d x e) matrix \sum_j \phi(K_j) V_j^T and the d-vector \sum_j \phi(K_j) are computed once and reused by
every query: O(N) time and memory instead of O(N^2) (Eq. 6). Causal masking restricts the sums to j <= i
(Eq. 8-12): they become prefix sums S_i and Z_i, and the transformer becomes an RNN whose state is (S, z)
(Eq. 16-20). The feature map is \phi(x) = elu(x) + 1 (Eq. 7), positive so that the weights are a distribution.

`linear_attention` (Eq. 5-6), `causal_linear_attention` (Eq. 8-12, chunked), `recurrent_step` (Eq. 18-20) and
the multi-head `LinearAttention` layer, registered as attention "linear_transformer".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import attention_inputs
from ...core.checks import check_shape
from ...registry import register_attention


class EluFeatureMap(torch.autograd.Function):
    r"""\phi(x) = elu(x) + 1 (Eq. 7) as one autograd op that keeps only its output for the backward pass.

    \phi'(x) = 1 for x > 0 (where \phi(x) = 1 + x > 1) and e^x = \phi(x) for x <= 0 (where \phi(x) <= 1), so
    \phi'(x) = min(\phi(x), 1): the input need not be kept. `F.elu(x) + 1` would keep both the input (for elu)
    and the output (for the product that follows), one (N, d) tensor more per query and key projection.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        phi = F.elu(x).add_(1.0)
        ctx.save_for_backward(phi)
        return phi

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (phi,) = ctx.saved_tensors
        return phi.clamp(max=1.0).mul_(grad)


def elu_feature_map(x: Tensor) -> Tensor:
    r"""\phi(x) = elu(x) + 1 (Eq. 7): positive, so every attention weight is positive, with a gradient everywhere
    (unlike relu, which is zero for negative inputs). Computed by `EluFeatureMap`."""
    return EluFeatureMap.apply(x)


class LinearAttentionState(NamedTuple):
    r"""The recurrent state of one causal linear attention layer after i tokens (Sec. 3.4, Eq. 16-19).

    `S` (B, H, d, e): s_i = \sum_{j <= i} \phi(K_j) V_j^T;   `z` (B, H, d): z_i = \sum_{j <= i} \phi(K_j).
    Its size does not depend on i: this is why generation costs the same at every position.
    """

    S: Tensor
    z: Tensor


class KeyValueSums(torch.autograd.Function):
    r"""The two key sums of Eq. 6, [\sum_j \phi(K_j) V_j^T, \sum_j \phi(K_j)], as one (d x (e + 1)) matrix.

    `phi_k` (..., M, d), `v` (..., M, e), leading dims broadcast. The backward forms both input gradients as
    (M, .) products, grad \phi(K) = V grad_S^T + grad_z (each row) and grad V = \phi(K) grad_S, in the layout of
    the inputs. Autograd's matmul would form the gradient of \phi(K)^T as a (d x M) matrix and hand it on
    transposed, so that the feature map's elementwise backward would read it across rows (about a tenth of the
    attention's own time on a CPU, besides the projections). The backward is written in differentiable ops:
    gradients of gradients work.
    """

    @staticmethod
    def forward(ctx, phi_k: Tensor, v: Tensor) -> Tensor:
        ctx.save_for_backward(phi_k, v)
        kv = phi_k.transpose(-2, -1) @ v                   # (..., d, e)  \sum_j \phi(K_j) V_j^T
        z = phi_k.sum(-2).unsqueeze(-1).expand(*kv.shape[:-1], 1)    # (..., d, 1)  \sum_j \phi(K_j)
        return torch.cat([kv, z], dim=-1)                  # (..., d, e + 1), z as the last column

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        phi_k, v = ctx.saved_tensors
        grad_kv, grad_z = grad[..., :-1], grad[..., -1]    # (..., d, e), (..., d)
        grad_phi_k = grad_v = None
        if ctx.needs_input_grad[0]:                        # (..., M, d): z's gradient reaches every key alike
            grad_phi_k = (v @ grad_kv.transpose(-2, -1)).add_(grad_z.unsqueeze(-2))
        if ctx.needs_input_grad[1]:
            grad_v = phi_k @ grad_kv                       # (..., M, e)
        return grad_phi_k, grad_v


def linear_attention(phi_q: Tensor, phi_k: Tensor, v: Tensor, eps: float = 1e-6) -> Tensor:
    r"""Non-causal linear attention on feature-mapped queries and keys (Eq. 5-6).

        V' = \phi(Q) (\phi(K)^T V) / (\phi(Q) \sum_j \phi(K_j))

    `phi_q` (..., N, d), `phi_k` (..., M, d), `v` (..., M, e) -> (..., N, e), leading dims broadcast.
    `eps` keeps the division finite when every key is padding (then the output is 0). Nothing of
    size N x M is formed. The key sum rides along as one more column of the (d x e) key-value matrix
    (`KeyValueSums`), so that one product with \phi(Q) gives every numerator and the denominator: no
    (N, d)-sized product for the denominator, forward or backward.
    """
    numerator, denominator = (phi_q @ KeyValueSums.apply(phi_k, v)).split([v.shape[-1], 1], dim=-1)
    return numerator * (denominator + eps).reciprocal()    # (..., N, e)  Eq. 6 (an (N, 1) inverse, no (N, e) division)


def causal_linear_attention(phi_q: Tensor, phi_k: Tensor, v: Tensor, eps: float = 1e-6, chunk_size: int = 64,
                            state: LinearAttentionState | None = None) -> tuple[Tensor, LinearAttentionState]:
    r"""Causal linear attention (Eq. 8-12): V'_i = \phi(Q_i)^T S_i / \phi(Q_i)^T Z_i (Eq. 12) with prefix sums

        S_i = \sum_{j <= i} \phi(K_j) V_j^T   (Eq. 10),        Z_i = \sum_{j <= i} \phi(K_j)   (Eq. 11),

    computed in chunks of `chunk_size` positions so that the (N, d, e) stack of all S_i is never formed. Inside
    a chunk the weights \phi(Q_i)^T \phi(K_j), j <= i, are a small lower-triangular (C x C) block; the chunks
    before it enter through the sum of their \phi(K_j) V_j^T, an exclusive prefix sum over chunks. Memory is
    O(N (C + d e / C)) per head, linear in N; time O(N (C + d) e).

    `phi_q`, `phi_k` (B, H, N, d), `v` (B, H, N, e). `state` continues from earlier tokens (the initial
    S_0, Z_0; zeros when None). Returns the output (B, H, N, e) and the state after the last token.
    """
    n, e = phi_q.shape[2], v.shape[-1]
    pad = (-n) % chunk_size if n else chunk_size           # N = 0: one chunk of padding, so S and Z stay defined
    if pad:                                                # zero features: padded keys add nothing to S, Z
        phi_q, phi_k, v = (F.pad(t, (0, 0, 0, pad)) for t in (phi_q, phi_k, v))
    q, k, vc = (rearrange(t, "b h (c l) x -> b h c l x", l=chunk_size) for t in (phi_q, phi_k, v))

    weights = (q @ k.transpose(-2, -1)).tril()             # (B, H, c, C, C)  \phi(Q_i)^T \phi(K_j), j <= i
    SZ = KeyValueSums.apply(k, vc).cumsum(2)               # (B, H, c, d, e + 1)  [S, Z] at the end of each chunk
    SZ_before = F.pad(SZ[:, :, :-1], (0, 0, 0, 0, 1, 0))   # everything before the chunk (Eq. 10-11, without S_0)
    if state is not None:
        SZ_0 = torch.cat([state.S, state.z.unsqueeze(-1)], dim=-1)   # (B, H, d, e + 1)
        SZ_before = SZ_before + SZ_0.unsqueeze(2)

    numerator, denominator = (q @ SZ_before).split([e, 1], dim=-1)   # the earlier chunks' share of Eq. 12
    numerator = numerator + weights @ vc                   # (B, H, c, C, e)  \phi(Q_i)^T S_i
    denominator = denominator + weights.sum(-1, keepdim=True)        # (B, H, c, C, 1)  \phi(Q_i)^T Z_i
    out = numerator / (denominator + eps)                  # Eq. 12
    out = rearrange(out, "b h c l e -> b h (c l) e")[:, :, :n]                # (B, H, N, e)

    SZ_end = SZ[:, :, -1] if state is None else SZ[:, :, -1] + SZ_0
    return out, LinearAttentionState(SZ_end[..., :e], SZ_end[..., e])


def recurrent_step(phi_q: Tensor, phi_k: Tensor, v: Tensor, state: LinearAttentionState,
                   eps: float = 1e-6) -> tuple[Tensor, LinearAttentionState]:
    r"""One step of the transformer as an RNN (Sec. 3.4): feature-mapped q_i, k_i (B, H, d) and v_i (B, H, e).

        s_i = s_{i-1} + \phi(k_i) v_i^T                                      (Eq. 18)
        z_i = z_{i-1} + \phi(k_i)                                            (Eq. 19)
        v'_i = \phi(q_i)^T s_i / \phi(q_i)^T z_i                             (Eq. 20, before the residual and f_l)

    Constant time and memory per step, whatever i is. Returns v'_i (B, H, e) and (s_i, z_i).
    """
    S = state.S.addcmul(phi_k.unsqueeze(-1), v.unsqueeze(-2))   # (B, H, d, e)
    z = state.z + phi_k                                    # (B, H, d)
    numerator = (phi_q.unsqueeze(-1) * S).sum(-2)          # (B, H, e)  (a batch of 1 x d products: faster than bmm)
    denominator = (phi_q * z).sum(-1, keepdim=True)        # (B, H, 1)
    return numerator / (denominator + eps), LinearAttentionState(S, z)


FEATURE_MAPS: dict[str, Callable[[Tensor], Tensor]] = {"elu": elu_feature_map}


@register_attention("linear_transformer", paper="linear_transformer")
class LinearAttention(nn.Module):
    r"""Multi-head linear attention of the linear transformer (Katharopoulos et al. 2020, Sec. 3.2-3.4).

    The projections are those of softmax attention (`to_q`, `to_k`, `to_v` without bias, `to_out` with one, as in
    `archzoo.core.FullAttention`, so weights load across); only the similarity changes, from
    exp(q^T k / \sqrt{d}) to \phi(q)^T \phi(k) with \phi = elu + 1 (Eq. 7). There is no 1/\sqrt{d} scaling.

    - `causal=False`: Eq. 5-6. Padding (`mask`, True = keep) zeroes \phi(K_j) of padded keys, which removes
      them from both sums exactly. Cross-attention to a `context` (B, M, context_dim) is Eq. 5 with keys and
      values from the context.
    - `causal=True`: Eq. 8-12 through `causal_linear_attention` (chunks of `chunk_size`), self-attention or a
      context of the same length, padding masks allowed.
    - A query with no key to attend to (all keys padded, or a causal prefix of padding) outputs 0, as in
      `FullAttention`.
    - `step(x_t, state)`: the recurrent form (Eq. 18-20) for generation; `prefill(x, state)`: the causal
      parallel form that also returns the state, to read a prompt in one pass and then continue step by step.

    `feature_map`: "elu" (Eq. 7), or any callable (applied to queries and keys) or pair of callables
    (query map, key map) with positive outputs, for the other kernels of Sec. 3.2.1. `dropout` must be 0: the
    attention weights are never formed, so there is nothing to drop out.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0,
                 feature_map: str | Callable | tuple[Callable, Callable] = "elu", eps: float = 1e-6,
                 chunk_size: int = 64, context_dim: int | None = None):
        super().__init__()
        if dropout:
            raise ValueError(f"linear attention never forms the attention weights, so attention dropout is not "
                             f"defined for it (Sec. 3.2); got dropout={dropout}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if isinstance(feature_map, str):
            if feature_map not in FEATURE_MAPS:
                raise ValueError(f"feature_map must be one of {sorted(FEATURE_MAPS)} or a callable, "
                                 f"got {feature_map!r}")
            feature_map = FEATURE_MAPS[feature_map]
        self.phi_q, self.phi_k = feature_map if isinstance(feature_map, tuple) else (feature_map, feature_map)
        self.dim, self.heads, self.dim_head, self.eps, self.chunk_size = dim, heads, dim_head, eps, chunk_size
        self.context_dim = context_dim or dim
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)                  # W_Q, all heads at once
        self.to_k = nn.Linear(self.context_dim, inner, bias=False)     # W_K
        self.to_v = nn.Linear(self.context_dim, inner, bias=False)     # W_V
        self.to_out = nn.Linear(inner, dim)                            # W_O

    def _heads(self, t: Tensor) -> Tensor:                             # (B, N, H d) -> (B, H, N, d), a view
        return t.view(*t.shape[:2], self.heads, self.dim_head).transpose(1, 2)

    def _merge(self, out: Tensor) -> Tensor:                           # (B, H, N, e) -> (B, N, dim)
        return self.to_out(out.transpose(1, 2).flatten(2))

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        x, kv = attention_inputs(x, context, mask, causal, self.dim, self.context_dim, self.to_out.weight.dtype)
        phi_q = self.phi_q(self._heads(self.to_q(x)))                  # (B, H, N, d)
        phi_k = self.phi_k(self._heads(self.to_k(kv)))                 # (B, H, M, d)
        v = self._heads(self.to_v(kv))                                 # (B, H, M, e)
        if mask is not None:
            phi_k = phi_k * rearrange(mask, "b m -> b 1 m 1").to(phi_k.dtype)   # padded keys: \phi(K_j) = 0
        if causal:
            out, _ = causal_linear_attention(phi_q, phi_k, v, self.eps, self.chunk_size)
        else:
            out = linear_attention(phi_q, phi_k, v, self.eps)
        out = self._merge(out)                                         # (B, N, dim)
        if mask is not None:                       # a query with no key at all gives 0, as FullAttention does
            empty = (mask.cumsum(-1) == 0) if causal else ~mask.any(-1, keepdim=True)   # (B, N) or (B, 1)
            out = out.masked_fill(empty.unsqueeze(-1), 0.0)
        return out

    # ------------------------------------------------------------------ the RNN view (Sec. 3.4)

    def init_state(self, batch_size: int, device=None, dtype=None) -> LinearAttentionState:
        """s_0 = 0, z_0 = 0 (Eq. 16-17 before any token)."""
        w = self.to_q.weight
        kw = dict(device=device or w.device, dtype=dtype or w.dtype)
        return LinearAttentionState(torch.zeros(batch_size, self.heads, self.dim_head, self.dim_head, **kw),
                                    torch.zeros(batch_size, self.heads, self.dim_head, **kw))

    def prefill(self, x: Tensor, state: LinearAttentionState | None = None) -> tuple[Tensor, LinearAttentionState]:
        """Causal attention over `x` (B, N, dim) continuing from `state`: (B, N, dim) and the state after x."""
        check_shape(x, "B N D", D=self.dim)
        phi_q, phi_k = self.phi_q(self._heads(self.to_q(x))), self.phi_k(self._heads(self.to_k(x)))
        out, state = causal_linear_attention(phi_q, phi_k, self._heads(self.to_v(x)), self.eps, self.chunk_size,
                                             state)
        return self._merge(out), state

    def step(self, x: Tensor, state: LinearAttentionState | None = None) -> tuple[Tensor, LinearAttentionState]:
        """One token `x` (B, dim) -> its output (B, dim) and the new state (Eq. 18-20); state None = s_0, z_0 = 0."""
        check_shape(x, "B D", D=self.dim)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)

        def heads(t: Tensor) -> Tensor:
            return rearrange(t, "b (h d) -> b h d", h=self.heads)      # (B, H, d)

        out, state = recurrent_step(self.phi_q(heads(self.to_q(x))), self.phi_k(heads(self.to_k(x))),
                                    heads(self.to_v(x)), state, self.eps)
        return self.to_out(rearrange(out, "b h e -> b (h e)")), state
