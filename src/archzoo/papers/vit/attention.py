r"""ViT's self-attention and what the paper reads out of it (Dosovitskiy et al. 2020, arXiv:2010.11929).

The encoder's multi-head self-attention (Appendix A, Eq. 5-8) is the Transformer's (`core.FullAttention`) with
biases on the query, key and value projections, as in the paper's released models:

    [q, k, v] = z U_qkv,   A = softmax(q k^T / \sqrt{D_h}),   SA(z) = A v                   (Eq. 5-7)
    MSA(z) = [SA_1(z); ...; SA_k(z)] U_msa                                                   (Eq. 8)

`mean_attention_distance` is the analysis of Sec. 4.5 and Fig. 7 (right): for every head, the distance in image
space between a query patch and the patches it attends to, weighted by the attention weights, the
"receptive field size" of the head.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from ...core.attention import FullAttention
from ...core.checks import check_shape
from ...registry import register_attention


@register_attention("vit", paper="vit")
class ViTAttention(FullAttention):
    r"""Multi-head self-attention of ViT (Appendix A, Eq. 5-8): `core.FullAttention` with biased q, k, v projections.

    ViT's U_qkv has a bias (3 * heads * dim_head parameters per layer, 27,648 of ViT-B/16's 86,567,656), so
    `qkv_bias` defaults to True here. With `qkv_bias=False` this is exactly `FullAttention`.
    `attention_weights(x)` returns the matrix A of Eq. 6 that the fused kernel never materializes.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, qkv_bias: bool = True):
        super().__init__(dim, heads, dim_head, dropout, qkv_bias=qkv_bias)

    def attention_weights(self, x: Tensor) -> Tensor:
        """A = softmax(q k^T / sqrt(D_h)) of Eq. 6 for the (normalized) layer input `x` (B, N, dim): (B, H, N, N)."""
        check_shape(x, "B N D", D=self.dim)
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)    # (B, H, N, D_h)
        k = rearrange(self.to_k(x), "b n (h d) -> b h n d", h=self.heads)    # (B, H, N, D_h)
        return (q @ k.transpose(-1, -2) / math.sqrt(self.dim_head)).softmax(-1)   # (B, H, N, N)


def patch_distances(grid: tuple[int, int], patch_size: int | tuple[int, int]) -> Tensor:
    """Euclidean distance in pixels between the centres of every pair of patches of a (h, w) grid: (h w, h w)."""
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    centres = torch.stack((rows.flatten() * ph, cols.flatten() * pw), dim=-1).double()   # (h w, 2), row-major
    return torch.cdist(centres, centres)                                                 # (h w, h w)


def mean_attention_distance(attn: Tensor, grid: tuple[int, int], patch_size: int | tuple[int, int],
                            num_prefix_tokens: int = 1) -> Tensor:
    r"""Mean attention distance per head (Sec. 4.5, Fig. 7 right), in pixels: (B, H, N, N) -> (H,).

    For query patch i of an image, d_i = \sum_j a_ij ||p_i - p_j|| / \sum_j a_ij over the patch keys j, with p the
    patch centres in pixels; the result averages d_i over the query patches and the images. The class token (the
    first `num_prefix_tokens` tokens) has no position in the image: it is left out as a query and as a key, and the
    weights on the patch keys are renormalized to sum to one.
    """
    n = grid[0] * grid[1] + num_prefix_tokens
    check_shape(attn, "B H N M", name="attention weights", N=n, M=n)
    a = attn[:, :, num_prefix_tokens:, num_prefix_tokens:].double()                 # (B, H, hw, hw) patch to patch
    a = a / a.sum(-1, keepdim=True)
    d = (a * patch_distances(grid, patch_size).to(a.device)).sum(-1)                # (B, H, hw): d_i per query
    return d.mean(dim=(0, 2))                                                        # (H,)
