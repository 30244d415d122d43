r"""The sparse feed-forward layer (Jaszczur et al. 2021, arXiv:2111.12763, Sec. 3.1).

A dense feed-forward layer reads all of W_1 and W_2 for every token; at batch 1 decoding is bound by reading
them. The sparse layer cuts the d_ff hidden units into d_ff / N blocks of N units and lets a cheap controller
keep exactly one unit per block:

    Y_sparse = max(0, x W_1 + b_1) \odot Controller(x),       SparseFFN(x) = Y_sparse W_2 + b_2
    Controller(x) = argmax(Reshape(x C_1 C_2, (-1, N)))           (one-hot in every block of N units)

Which units form a block is a labelling: here element n of block k is unit n K + k (K = d_ff / N blocks), so
that the controller's output reshapes to (..., N, K) and every reduction over a block runs over a non-innermost
axis, several times faster on CPU than over an innermost axis of length N.

with a low-rank controller C_1 (d_model x d_lowrank), C_2 (d_lowrank x d_ff), d_lowrank = d_model / N by
default. At inference only the d_ff / N chosen rows of W_1 and W_2 are read (`SparseFeedForward.decode`), so the
layer's cost falls by about N.

Training (Sec. 3.1, and the authors' trax `SparseFF`): the unit of each block is drawn with the Gumbel-max trick,
argmax(log softmax(l) + tau g), g ~ Gumbel(0, 1), tau = 0.1, and passed on straight through: the forward pass
uses the one-hot selection, the backward pass the gradient of p = softmax(l) (one_hot + p - stop_grad(p)).
The Gumbel-max draw argmax(log p + tau g) = argmax(l / tau + g) is a sample of softmax(l / tau); we draw the same
distribution by inversion, one uniform per block against the cumulative softmax (fewer and cheaper random numbers).
As in the authors' code, a batch uses this quantised mask with probability `quant_prob` (0.3) and the soft mask
p otherwise, which steadies training (the authors' code cites Kaiser & Bengio 2018, arXiv:1801.09797, Sec. 2.1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer


@register_layer("SparseFeedForward", paper="terraformer")
class SparseFeedForward(nn.Module):
    """Sparse FFN of Sec. 3.1: one active unit in each block of `block_size` (N) units of the d_ff hidden layer.

    - `forward(x)` (..., dim) -> (..., dim): in training the straight-through Gumbel selection (module docstring);
      in eval mode the controller's argmax, computed as a masked dense layer (every unit, the others zeroed).
    - `decode(x)` computes the same eval-mode output from the chosen units only: d_ff / N rows of W_1 and W_2.
    - `lowrank` is d_lowrank (default dim / N, at least 1); `temperature` the Gumbel noise scale tau; `quant_prob`
      the probability that a training batch uses the quantised mask rather than the soft one.
    W_1 and W_2 are stored unit by unit, (d_ff, dim) each, so that a chosen unit is one contiguous row of both.
    """

    def __init__(self, dim: int, ff_dim: int, block_size: int = 32, lowrank: int | None = None,
                 temperature: float = 0.1, quant_prob: float = 0.3, dropout: float = 0.0):
        super().__init__()
        if block_size < 1 or ff_dim % block_size:
            raise ValueError(f"ff_dim ({ff_dim}) must be a positive multiple of block_size ({block_size})")
        if not 0.0 <= quant_prob <= 1.0 or temperature <= 0:
            raise ValueError(f"quant_prob must be in [0, 1] and temperature > 0, got {quant_prob} and {temperature}")
        self.dim, self.ff_dim, self.block_size = dim, ff_dim, block_size
        self.n_blocks = ff_dim // block_size
        self.lowrank = lowrank or max(1, dim // block_size)
        self.temperature, self.quant_prob = temperature, quant_prob
        self.w1 = nn.Parameter(torch.empty(ff_dim, dim))          # W_1^T: row u = unit u's input weights
        self.b1 = nn.Parameter(torch.empty(ff_dim))
        self.w2 = nn.Parameter(torch.empty(ff_dim, dim))          # W_2:   row u = unit u's output weights
        self.b2 = nn.Parameter(torch.empty(dim))
        self.c1 = nn.Linear(dim, self.lowrank, bias=False)        # C_1
        self.c2 = nn.Linear(self.lowrank, ff_dim)                 # C_2 (with a bias, as in the authors' code)
        self.drop = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W_1, b_1 as `nn.Linear(dim, ff_dim)` and W_2, b_2 as `nn.Linear(ff_dim, dim)` draw them."""
        for w, b, fan_in in ((self.w1, self.b1, self.dim), (self.w2, self.b2, self.ff_dim)):
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def controller_logits(self, x: Tensor) -> Tensor:             # (..., dim) -> (..., N, d_ff / N)
        return rearrange(self.c2(self.c1(x)), "... (n k) -> ... n k", n=self.block_size)

    def selection(self, x: Tensor) -> Tensor:
        """Controller(x) (..., N, d_ff / N), one column per block: one-hot argmax in eval mode; in training the
        straight-through Gumbel selection, or (with probability 1 - quant_prob) the soft mask softmax(l)."""
        logits = self.controller_logits(x)
        if not self.training:
            return _one_hot(logits.argmax(-2), logits)
        p = logits.softmax(-2)
        cdf = (logits.detach() / self.temperature).softmax(-2).cumsum(-2)
        u = torch.rand_like(cdf[..., :1, :])                                  # one uniform per block
        drawn = (cdf < u).sum(-2).clamp_(max=self.block_size - 1)          # ~ softmax(l / tau) = Gumbel-max
        hard = _one_hot(drawn, p)
        if torch.rand(()) < self.quant_prob:
            return hard + p - p.detach()                          # one-hot forward, softmax gradient backward
        return p

    def chosen_units(self, x: Tensor) -> Tensor:
        """Index in [0, d_ff) of the unit the controller keeps in each block: (..., d_ff / N)."""
        return self.controller_logits(x).argmax(-2) * self.n_blocks + torch.arange(self.n_blocks, device=x.device)

    def forward(self, x: Tensor) -> Tensor:                        # (..., dim)
        check_shape(x, "... D", D=self.dim)
        mask = rearrange(self.selection(x), "... n k -> ... (n k)")                  # (..., d_ff)
        hidden = F.relu(F.linear(x, self.w1, self.b1)) * mask                        # Y_sparse
        return self.drop(hidden) @ self.w2 + self.b2

    def decode(self, x: Tensor) -> Tensor:
        """The eval-mode output from the chosen units alone (inference, Sec. 3.1): for each token, gather the
        d_ff / N chosen rows of W_1 and W_2 and compute relu(x W_1[:, u] + b_1[u]) W_2[u] + b_2."""
        check_shape(x, "... D", D=self.dim)
        flat = x.reshape(-1, self.dim)                                               # (T, dim)
        units = self.chosen_units(flat)                                              # (T, K)
        w1 = F.embedding(units, self.w1)                                             # (T, K, dim): rows of W_1^T
        hidden = F.relu((w1 @ flat.unsqueeze(-1)).squeeze(-1) + self.b1.take(units))  # (T, K)
        w2 = F.embedding(units, self.w2)                                             # (T, K, dim): rows of W_2
        return ((hidden.unsqueeze(-2) @ w2).squeeze(-2) + self.b2).view_as(x)


def _one_hot(index: Tensor, like: Tensor) -> Tensor:
    """A tensor of `like`'s shape and dtype with 1 at `index` (..., K) along dim -2, 0 elsewhere."""
    return torch.zeros_like(like).scatter_(-2, index.unsqueeze(-2), 1.0)
