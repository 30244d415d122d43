r"""Axial position embeddings (the authors' trax implementation of Reformer; Hugging Face's `AxialPositionEmbeddings`).

A learned embedding per position needs n x d parameters, 67M for the 64K-token enwik8 model of the paper at
d = 1024. Axial embeddings factor the positions as a grid n = n_1 x n_2 and learn one table per axis, each for
part of the channels:

    E[i_1 n_2 + i_2] = [E_1[i_1]; E_2[i_2]],   E_1 in R^{n_1 x d_1},  E_2 in R^{n_2 x d_2},  d_1 + d_2 = d

so position p = i_1 n_2 + i_2 costs n_1 d_1 + n_2 d_2 parameters in all (about 0.2M for the enwik8 model). They are
not described in the paper; its authors introduced them in the code released with it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer


@register_layer("AxialPositionalEmbedding", paper="reformer")
class AxialPositionalEmbedding(nn.Module):
    """Adds E[:N] (see the module docstring) to x (B, N, d), N <= n_1 n_2, with `shape` (n_1, n_2) and `dims`
    (d_1, d_2). The tables start at N(0, 1) entries, as Hugging Face's do after `init_weights`."""

    def __init__(self, shape: tuple[int, int], dims: tuple[int, int]):
        super().__init__()
        if len(shape) != 2 or len(dims) != 2:
            raise ValueError(f"axial embeddings take two axes: shape (n_1, n_2) and dims (d_1, d_2), "
                             f"got {shape}, {dims}")
        self.shape, self.dims = tuple(shape), tuple(dims)
        self.dim, self.max_len = sum(dims), shape[0] * shape[1]
        self.weight_1 = nn.Parameter(torch.randn(shape[0], dims[0]))    # E_1, one row per i_1
        self.weight_2 = nn.Parameter(torch.randn(shape[1], dims[1]))    # E_2, one row per i_2

    def table(self, n: int) -> Tensor:
        """E[:n]: (n, d), row p = [E_1[p // n_2]; E_2[p % n_2]]."""
        p = torch.arange(n, device=self.weight_1.device)
        return torch.cat([self.weight_1[p // self.shape[1]], self.weight_2[p % self.shape[1]]], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        n = check_shape(x, "B N D", D=self.dim)["N"]
        if n > self.max_len:
            raise ValueError(f"input: sequence length N={n} exceeds the axial grid {self.shape[0]} x {self.shape[1]} "
                             f"= {self.max_len} positions")
        return x + self.table(n).to(x.dtype)
