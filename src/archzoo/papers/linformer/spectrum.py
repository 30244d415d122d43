r"""Sec. 3 of Linformer (Wang et al. 2020, arXiv:2006.04768): the context mapping matrix is low rank.

    P = softmax( Q W_i^Q (K W_i^K)^T / sqrt(d_k) )  in R^{n x n}                            (Eq. 2)

Fig. 1 takes the P of every layer and head of a pretrained Transformer, computes its singular values
sigma_1 >= ... >= sigma_n and plots the normalised cumulative singular value sum_{j<=i} sigma_j / sum_j sigma_j
against i: a long-tailed spectrum, most of it in the first few singular values, so P can be replaced by a
rank-k approximation (Theorem 1) without losing much.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import FullAttention
from ...core.checks import check_shape


def normalized_cumulative_singular_values(P: Tensor) -> Tensor:
    """sum_{j<=i} sigma_j / sum_j sigma_j for i = 1..n of each matrix in `P` (..., n, n), as in Fig. 1: (..., n)."""
    check_shape(P, "... N M", name="P")
    sigma = torch.linalg.svdvals(P.double())                          # (..., min(n, m)), descending
    return sigma.cumsum(-1) / sigma.sum(-1, keepdim=True)


def spectrum_energy(P: Tensor) -> Tensor:
    """sum_{j<=i} sigma_j^2 / sum_j sigma_j^2 (the squared Frobenius norm captured by the best rank-i
    approximation, Eckart-Young) of each matrix in `P` (..., n, n): (..., n)."""
    check_shape(P, "... N M", name="P")
    energy = torch.linalg.svdvals(P.double()) ** 2
    return energy.cumsum(-1) / energy.sum(-1, keepdim=True)


def attention_entropy(P: Tensor) -> Tensor:
    """Mean entropy of the rows of each P (..., n, n), divided by log n: (...). 1 for uniform attention (every row
    1/n, as at initialisation), 0 when every query attends to one key: how much a head has learned to select."""
    n = check_shape(P, "... N M", name="P")["M"]
    entropy = -(P * P.clamp_min(torch.finfo(P.dtype).tiny).log()).sum(-1)      # (..., n)
    return entropy.mean(-1) / math.log(n)


def shuffle_rows(P: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """P (..., n, n) with the entries of every row permuted at random: each query keeps its attention weights (the
    same sharpness and entropy), but nothing is shared between rows. The control of the low-rank claim: a spectrum
    is long-tailed because of P's structure only if it is more so than that of its row-shuffled twin."""
    check_shape(P, "... N M", name="P")
    order = torch.rand(P.shape, generator=generator).argsort(-1)
    return P.gather(-1, order.to(P.device))


@torch.no_grad()
def context_mapping_matrices(model: nn.Module, *inputs, **kwargs) -> Tensor:
    """Run `model(*inputs, **kwargs)` and return the P of Eq. 2 of every `FullAttention` in it, in call order:
    (L, B, H, N, N), L the number of attention layers.

    P is recomputed from each layer's own input and `to_q`, `to_k` (SDPA never materialises it). Padding and
    causal masks are not applied, so call it on unpadded, bidirectional inputs.
    """
    layers = [m for m in model.modules() if isinstance(m, FullAttention)]
    if not layers:
        raise ValueError("context_mapping_matrices needs a model with FullAttention layers (attention='full')")
    found: list[Tensor] = []

    def capture(attn: FullAttention, args, kw) -> None:
        if kw.get("context") is not None or kw.get("causal") or kw.get("mask") is not None:
            raise ValueError("context_mapping_matrices supports unmasked bidirectional self-attention only")
        x = args[0]                                                    # (B, N, dim), the layer's (normed) input
        q = rearrange(attn.to_q(x), "b n (h d) -> b h n d", h=attn.heads)
        k = rearrange(attn.to_k(x), "b n (h d) -> b h n d", h=attn.heads)
        found.append(torch.softmax(q @ k.transpose(-1, -2) * attn.dim_head ** -0.5, dim=-1))   # (B, H, N, N)

    hooks = [m.register_forward_pre_hook(capture, with_kwargs=True) for m in layers]
    was_training = model.training
    model.eval()
    try:
        model(*inputs, **kwargs)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return torch.stack(found)
