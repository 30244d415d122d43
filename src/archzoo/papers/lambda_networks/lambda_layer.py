r"""The lambda layer (Bello 2021, arXiv:2102.08602, Sec. 3-4, Fig. 2, Alg. 1 and Alg. 3 of App. C).

Instead of attending, a lambda layer summarises the context into small linear functions, *lambdas*, and applies
them to every query. With queries Q = X W_Q (|k| x |h| per position, multi-query heads), keys K = C W_K (softmax
normalised over the m context positions) and values V = C W_V (|v| per position, batch-normalised):

    content lambda    \lambda^c   = \bar{K}^T V                    (|k| x |v|, shared by every query, Sec. 3.2)
    position lambdas  \lambda^p_n = E_n^T V                       (|k| x |v|, one per query position n, Sec. 3.2)
    output            y_n         = q_n^T (\lambda^c + \lambda^p_n)  (per head, Eq. in Sec. 3.2)

E_n in R^{m x |k|} holds relative position embeddings, E_{nm} = R[m - n]. The *global* form stores R for every
offset of an H x W context (the memory term |k| n m of Table 2); the *lambda convolution* (Sec. 4.2, Alg. 3)
restricts the context of position lambdas to an r x r neighbourhood and computes all \lambda^p_n at once as a 3D
convolution of the values with kernel (1, r, r) over the (|v|, H, W) volume, so memory is Theta(b n |k| |v|).
|u| (intra-depth, Sec. 4.3) gives keys and values |u| channels that are summed over in the lambdas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer


@register_layer(paper="lambda_networks")
class LambdaLayer(nn.Module):
    r"""Lambda layer on a (B, C, H, W) feature map, output (B, dim_out, H, W) with dim_out = |h| |v| (Alg. 1).

    `r` (odd) selects the lambda convolution of Sec. 4.2: position lambdas from an r x r neighbourhood, any H and W.
    `r=None` with `size=(H, W)` selects the global form: position lambdas from the whole H x W context (Sec. 3.2);
    its relative embeddings R have shape (|k|, |u|, 2H-1, 2W-1), the layout of the lambda convolution's kernel with
    r = 2H-1, so the two forms coincide where the kernel covers the context. `content=False` drops \lambda^c
    (a position-only lambda layer, the ablation of Sec. 5.1).
    """

    def __init__(self, dim: int, dim_out: int | None = None, *, dim_k: int = 16, heads: int = 4, dim_u: int = 1,
                 r: int | None = 23, size: tuple[int, int] | None = None, content: bool = True):
        super().__init__()
        dim_out = dim_out or dim
        if dim_out % heads:
            raise ValueError(f"dim_out ({dim_out}) must be divisible by heads ({heads})")
        if (r is None) == (size is None):
            raise ValueError("give exactly one of r (lambda convolution) and size (global form)")
        if r is not None and r % 2 == 0:
            raise ValueError(f"r must be odd, got {r}")
        self.dim, self.dim_out, self.dim_k, self.heads, self.dim_u = dim, dim_out, dim_k, heads, dim_u
        self.dim_v = dim_out // heads
        self.r, self.size, self.content = r, tuple(size) if size is not None else None, content
        self.to_q = nn.Conv2d(dim, dim_k * heads, 1, bias=False)         # W_Q, |k| |h| per position
        self.to_k = nn.Conv2d(dim, dim_k * dim_u, 1, bias=False)         # W_K, |k| |u|
        self.to_v = nn.Conv2d(dim, self.dim_v * dim_u, 1, bias=False)    # W_V, |v| |u|
        self.norm_q = nn.BatchNorm2d(dim_k * heads)                      # BN on queries and values (Sec. 4.3)
        self.norm_v = nn.BatchNorm2d(self.dim_v * dim_u)
        span = (r, r) if r is not None else (2 * size[0] - 1, 2 * size[1] - 1)
        self.rel_pos_emb = nn.Parameter(torch.empty(dim_k, dim_u, *span))   # R, (|k|, |u|, r_h, r_w)
        nn.init.normal_(self.to_q.weight, std=(dim * dim_k) ** -0.5)     # App. C initialisation
        nn.init.normal_(self.to_k.weight, std=dim ** -0.5)
        nn.init.normal_(self.to_v.weight, std=dim ** -0.5)
        nn.init.normal_(self.rel_pos_emb, std=dim_k ** -0.5)

    def embeddings(self, h: int, w: int) -> Tensor:
        """The global form's E, (n, m, |k|, |u|): E_{nm} = R[m - n], offsets counted from the centre of R."""
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pos = torch.stack([ys.flatten(), xs.flatten()], -1).to(self.rel_pos_emb.device)   # (n, 2)
        rel = pos[None, :, :] - pos[:, None, :] + torch.tensor([h - 1, w - 1], device=pos.device)  # m - n, (n, m, 2)
        return rearrange(self.rel_pos_emb[:, :, rel[..., 0], rel[..., 1]], "k u n m -> n m k u")

    def position_lambdas(self, v: Tensor, h: int, w: int) -> Tensor:   # (B, |u|, |v|, n) -> (B, |k|, |v|, n)
        if self.r is None:                                                 # global form, lambda^p_n = E_n^T V
            return torch.einsum("nmku,buvm->bkvn", self.embeddings(h, w), v)
        # Alg. 3's conv3d over the (|v|, H, W) volume has kernel depth 1: the same as a 2D convolution of every
        # value channel v on its own, computed as one conv2d with v folded into the batch (faster on CPU).
        v = rearrange(v, "b u v (hh ww) -> (b v) u hh ww", hh=h)         # (B |v|, |u|, H, W)
        lam = F.conv2d(v, self.rel_pos_emb, padding=self.r // 2)          # (B |v|, |k|, H, W)
        return rearrange(lam, "(b v) k hh ww -> b k v (hh ww)", v=self.dim_v)

    def forward(self, x: Tensor) -> Tensor:                              # (B, C, H, W)
        if self.size is None:
            dims = check_shape(x, "B C H W", name="input", C=self.dim)
        else:
            dims = check_shape(x, "B C H W", name="input", C=self.dim, H=self.size[0], W=self.size[1])
        h, w = dims["H"], dims["W"]
        q = rearrange(self.norm_q(self.to_q(x)), "b (h k) hh ww -> b h k (hh ww)", h=self.heads)      # (B, |h|, |k|, n)
        k = rearrange(self.to_k(x), "b (u k) hh ww -> b u k (hh ww)", u=self.dim_u).softmax(-1)     # K bar, over m
        v = rearrange(self.norm_v(self.to_v(x)), "b (u v) hh ww -> b u v (hh ww)", u=self.dim_u)    # (B, |u|, |v|, m)
        lam_p = self.position_lambdas(v, h, w)                            # lambda^p_n, (B, |k|, |v|, n)
        y = torch.einsum("bhkn,bkvn->bhvn", q, lam_p)                     # q_n^T lambda^p_n
        if self.content:
            lam_c = torch.einsum("bukm,buvm->bkv", k, v)                  # lambda^c = K bar^T V, (B, |k|, |v|)
            y = y + torch.einsum("bhkn,bkv->bhvn", q, lam_c)              # q_n^T lambda^c
        return rearrange(y, "b h v (hh ww) -> b (h v) hh ww", hh=h)       # (B, |h| |v|, H, W)

    def extra_repr(self) -> str:
        form = f"r={self.r}" if self.r is not None else f"size={self.size}"
        return f"{self.dim}, {self.dim_out}, dim_k={self.dim_k}, heads={self.heads}, dim_u={self.dim_u}, {form}"
