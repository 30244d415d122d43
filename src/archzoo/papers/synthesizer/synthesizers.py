r"""The synthesizing functions of Tay et al. (2020, arXiv:2005.00743, Sec. 3.1 and 3.2).

A synthesizing function S(X) produces the l x l attention logits of one layer *without comparing tokens*: either
each token predicts its own row from itself alone (dense), or the logits are parameters that ignore the input
altogether (random). `SynthesizerAttention` (attention.py) turns them into Y = softmax(S(X)) G(X).

Each class below has
- `logits(x) -> (B or 1, H, N, N)`: the paper's formula, written out (the logits of the first N of the l
  positions, for a sequence of N <= l tokens);
- `bilinear(x) -> (q, k)` where the logits are a bilinear form, logits = q k^T with q `(B or 1, H, N, E)` and k
  `(1, H, N, E)`: then the attention runs as one fused scaled-dot-product call and never stores an N x N
  matrix. The dense and factorized random synthesizers have one; the random and factorized dense do not
  (their logits are stored in full; `bilinear` is None).

With h heads, each head has its own synthesizing function, as in the paper's multi-head models.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn


def _uniform_(t: Tensor, fan_in: int) -> Tensor:
    """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for weights stored per head."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.init.uniform_(t, -bound, bound)


def default_factors(seq_len: int) -> tuple[int, int]:
    """(a, b) with a * b = l for the factorized dense synthesizer: a the largest divisor of l up to sqrt(l)."""
    a = max(d for d in range(1, math.isqrt(seq_len) + 1) if seq_len % d == 0)
    return a, seq_len // a


class DenseSynthesizer(nn.Module):
    r"""Dense Synthesizer (Tay et al. 2020, arXiv:2005.00743, Sec. 3.1, Eq. 1-2).

    Every token predicts the logits of its own attention row over the l positions, from itself alone:

        B_i = F(X_i) = W_2 \sigma_R(W_1 X_i + b_1) + b_2,     F: R^d -> R^l          (Eq. 1, 2)

    a two-layer position-wise MLP with ReLU. No query meets a key: token i never sees token j when its weights
    are made. With h heads, W_1 maps d to h * d_h hidden units, d_h for each head, and each head has its own
    W_2 (d_h -> l) and b_2: with h d_h = d that is the paper's d^2 + d l weights per layer (Table 1).

    Since B_ij = \sigma_R(W_1 X_i + b_1) . W_2[:, j] + b_2[j], the logits are a dot product of a query that depends
    on token i with a key that depends only on the position j: `bilinear` returns q_i = [hidden_i, 1] and
    k_j = [W_2[:, j], b_2[j]].
    """

    def __init__(self, dim: int, heads: int, dim_head: int, seq_len: int):
        super().__init__()
        self.heads, self.seq_len = heads, seq_len
        self.w1 = nn.Linear(dim, heads * dim_head)                                   # W_1, b_1 (all heads)
        self.w2 = nn.Parameter(_uniform_(torch.empty(heads, seq_len, dim_head), dim_head))   # W_2^T per head
        self.b2 = nn.Parameter(_uniform_(torch.empty(heads, seq_len), dim_head))          # b_2 per head

    def hidden(self, x: Tensor) -> Tensor:                                           # (B, N, dim)
        return rearrange(F.relu(self.w1(x)), "b n (h e) -> b h n e", h=self.heads)   # (B, H, N, d_h)

    def logits(self, x: Tensor) -> Tensor:
        n = x.shape[1]
        b_full = torch.einsum("bhne,hle->bhnl", self.hidden(x), self.w2) + self.b2[:, None, :]   # F(X): (B, H, N, l)
        return b_full[..., :n]                                                       # the first N positions

    def bilinear(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[1]
        hidden = self.hidden(x)                                                      # (B, H, N, d_h)
        q = torch.cat([hidden, hidden.new_ones(*hidden.shape[:-1], 1)], -1)          # (B, H, N, d_h + 1)
        k = torch.cat([self.w2[:, :n], self.b2[:, :n, None]], -1)[None]              # (1, H, N, d_h + 1)
        return q, k


class FactorizedDenseSynthesizer(nn.Module):
    r"""Factorized Dense Synthesizer (Tay et al. 2020, arXiv:2005.00743, Sec. 3.1, "Factorized Dense").

    Two smaller heads on the dense synthesizer's hidden layer predict A_i in R^a and B_i in R^b with a b = l,

        A_i, B_i = F_A(X_i), F_B(X_i),     C = H_A(A) * H_B(B),     Y = softmax(C) G(X)

    where the tiling functions H_A: R^a -> R^{ab} and H_B: R^b -> R^{ba} duplicate their vector, * is the
    element-wise product, and the two tilings are composed so that equal values do not fall in one block:
    H_A repeats the whole vector A_i b times, H_B repeats each entry of B_i a times, so C_i[q a + p] = A_i[p] B_i[q]
    and every pair (p, q) appears exactly once. F_A and F_B share the first layer (W_1, b_1), so a layer has
    d^2 + d (a + b) weights with h d_h = d, against d^2 + d l for the dense synthesizer (Table 1).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, seq_len: int, factors: tuple[int, int] | None = None):
        super().__init__()
        a, b = factors or default_factors(seq_len)
        if a * b != seq_len:
            raise ValueError(f"the factorized dense synthesizer needs factors a * b = l; got {a} * {b} != {seq_len}")
        self.heads, self.seq_len, self.a, self.b = heads, seq_len, a, b
        self.w1 = nn.Linear(dim, heads * dim_head)                                   # W_1, b_1, shared by F_A, F_B
        self.wa = nn.Parameter(_uniform_(torch.empty(heads, a, dim_head), dim_head))  # F_A's second layer
        self.ba = nn.Parameter(_uniform_(torch.empty(heads, a), dim_head))
        self.wb = nn.Parameter(_uniform_(torch.empty(heads, b, dim_head), dim_head))  # F_B's second layer
        self.bb = nn.Parameter(_uniform_(torch.empty(heads, b), dim_head))

    def logits(self, x: Tensor) -> Tensor:                                           # (B, N, dim)
        n = x.shape[1]
        hidden = rearrange(F.relu(self.w1(x)), "b n (h e) -> b h n e", h=self.heads)   # (B, H, N, d_h)
        A = torch.einsum("bhne,hpe->bhnp", hidden, self.wa) + self.ba[:, None, :]      # (B, H, N, a)
        B = torch.einsum("bhne,hqe->bhnq", hidden, self.wb) + self.bb[:, None, :]      # (B, H, N, b)
        H_A = repeat(A, "... a -> ... (b a)", b=self.b)                              # A tiled b times: (..., l)
        H_B = repeat(B, "... b -> ... (b a)", a=self.a)                              # each B entry a times: (..., l)
        return (H_A * H_B)[..., :n]                                                  # C: (B, H, N, N)

    bilinear = None


class RandomSynthesizer(nn.Module):
    r"""Random Synthesizer (Tay et al. 2020, arXiv:2005.00743, Sec. 3.1, "Random Synthesizer").

        Y = softmax(R) G(X),     R in R^{l x l}

    R is randomly initialised (N(0, 1) here) and either trained (`fixed=False`) or kept fixed (`fixed=True`, the
    paper's "Fixed Random", a buffer that is saved but never updated). The logits condition on nothing: the
    same alignment serves every input, learned for the task over all samples. l^2 parameters per head.
    """

    def __init__(self, heads: int, seq_len: int, fixed: bool = False):
        super().__init__()
        self.seq_len, self.fixed = seq_len, fixed
        R = torch.randn(heads, seq_len, seq_len)                                     # (H, l, l)
        if fixed:
            self.register_buffer("R", R)
        else:
            self.R = nn.Parameter(R)

    def logits(self, x: Tensor) -> Tensor:
        n = x.shape[1]
        return self.R[None, :, :n, :n]                                               # (1, H, N, N)

    bilinear = None


class FactorizedRandomSynthesizer(nn.Module):
    r"""Factorized Random Synthesizer (Tay et al. 2020, arXiv:2005.00743, Sec. 3.1, "Factorized Random").

        Y = softmax(R_1 R_2^T) G(X),     R_1, R_2 in R^{l x k}

    a rank-k random alignment: 2 l k parameters per head instead of l^2 (the paper uses k = 8). R_1 and R_2 start
    as N(0, 1/sqrt(k)) so that R_1 R_2^T has unit-variance entries like the random synthesizer's R.
    `fixed=True` keeps them fixed.
    """

    def __init__(self, heads: int, seq_len: int, k: int = 8, fixed: bool = False):
        super().__init__()
        if not 1 <= k <= seq_len:
            raise ValueError(f"the factorized random synthesizer needs 1 <= k <= l={seq_len}, got k={k}")
        self.seq_len, self.k, self.fixed = seq_len, k, fixed
        R1, R2 = (torch.randn(heads, seq_len, k) * k ** -0.25 for _ in range(2))     # (H, l, k) each
        if fixed:
            self.register_buffer("R1", R1)
            self.register_buffer("R2", R2)
        else:
            self.R1, self.R2 = nn.Parameter(R1), nn.Parameter(R2)

    def logits(self, x: Tensor) -> Tensor:
        n = x.shape[1]
        return (self.R1 @ self.R2.transpose(-1, -2))[None, :, :n, :n]                # (1, H, N, N)

    def bilinear(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[1]
        return self.R1[None, :, :n], self.R2[None, :, :n]                            # (1, H, N, k) each


SYNTHESIZERS = ("dense", "random", "factorized_dense", "factorized_random")


def build_synthesizer(name: str, dim: int, heads: int, dim_head: int, seq_len: int, *, fixed_random: bool = False,
                      k: int = 8, factors: tuple[int, int] | None = None) -> nn.Module:
    """One synthesizing function by the paper's name (`SYNTHESIZERS`)."""
    if name == "dense":
        return DenseSynthesizer(dim, heads, dim_head, seq_len)
    if name == "factorized_dense":
        return FactorizedDenseSynthesizer(dim, heads, dim_head, seq_len, factors)
    if name == "random":
        return RandomSynthesizer(heads, seq_len, fixed=fixed_random)
    if name == "factorized_random":
        return FactorizedRandomSynthesizer(heads, seq_len, k=k, fixed=fixed_random)
    raise ValueError(f"unknown synthesizer {name!r}; expected one of {', '.join(SYNTHESIZERS)}")

