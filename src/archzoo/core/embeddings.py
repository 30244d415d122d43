"""Token, positional and patch embeddings shared by the sequence and vision papers."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from .checks import check_shape


def check_token_ids(ids, vocab_size: int, name: str = "ids") -> None:
    """Raise a ValueError unless `ids` is an integer tensor of token ids in [0, vocab_size).

    The message names the vocabulary size and the smallest and largest id received, where `nn.Embedding` raises
    an IndexError ("index out of range in self") on the CPU and a device-side assert on CUDA.
    """
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{name}: expected integer token ids in [0, {vocab_size}), got {got}")
    if ids.numel():
        low, high = (int(t) for t in torch.aminmax(ids))
        if low < 0 or high >= vocab_size:
            raise ValueError(f"{name}: token ids must be in [0, {vocab_size}) (vocab_size={vocab_size}), "
                             f"got min id {low} and max id {high}")


class TokenEmbedding(nn.Embedding):
    """`nn.Embedding` for token ids that checks them first (`check_token_ids`): a ValueError naming the vocabulary
    size and the offending ids instead of an IndexError. Any integer dtype is accepted (uint8 bytes, int32).
    Parameters and state-dict keys are `nn.Embedding`'s (`weight`, (vocab_size, dim)).
    """

    def forward(self, ids: Tensor) -> Tensor:                 # (B, N) -> (B, N, dim)
        check_token_ids(ids, self.num_embeddings)
        return super().forward(ids.long())


class LearnedPositionalEmbedding(nn.Module):
    """A trained vector per position added to the tokens (BERT, GPT, ViT; Vaswani et al. 2017, Sec. 3.5, found it
    on par with sinusoids). `forward(x)` returns `x + E[:N]` for `x` of shape (B, N, dim), N <= max_len.
    """

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.max_len, self.dim = max_len, dim
        self.weight = nn.Parameter(torch.randn(max_len, dim) * 0.02)   # std 0.02 as in BERT and ViT

    def forward(self, x: Tensor) -> Tensor:
        n = check_shape(x, "B N D", D=self.dim)["N"]
        if n > self.max_len:
            raise ValueError(f"input: sequence length N={n} exceeds max_len={self.max_len} of the position embedding")
        return x + self.weight[:n]


def _sincos_1d(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """[sin(p * w_i), cos(p * w_i)] for w_i = temperature^(-2i/dim), i < dim/2: (P,) -> (P, dim/2, 2)."""
    omega = temperature ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)     # (dim/2,)
    angles = positions.double()[:, None] * omega                                     # (P, dim/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1)


class SinusoidalPositionalEmbedding(nn.Module):
    r"""Fixed sinusoids of Vaswani et al. (2017, arXiv:1706.03762, Sec. 3.5), added to the tokens:

        PE(pos, 2i) = \sin(pos / 10000^{2i / d}),   PE(pos, 2i + 1) = \cos(pos / 10000^{2i / d})

    so PE(pos + k) is a linear function of PE(pos). The table is a non-persistent buffer (not in the
    state dict). `forward(x)` returns `x + PE[:N]` for `x` of shape (B, N, dim), N <= max_len.
    """

    def __init__(self, dim: int, max_len: int = 5000):
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal position embedding needs an even dim, got {dim}")
        self.dim, self.max_len = dim, max_len
        pe = rearrange(_sincos_1d(torch.arange(max_len), dim), "p i two -> p (i two)")   # sin, cos interleaved
        self.register_buffer("pe", pe.float(), persistent=False)                        # (max_len, dim)

    def forward(self, x: Tensor) -> Tensor:
        n = check_shape(x, "B N D", D=self.dim)["N"]
        if n > self.max_len:
            raise ValueError(f"input: sequence length N={n} exceeds max_len={self.max_len} of the position embedding")
        return x + self.pe[:n].to(x.dtype)


def sincos_2d(h: int, w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed 2D sin-cos position table of shape (h * w, dim), rows in row-major patch order.

    As in "Simple ViT" (Beyer et al. 2022, arXiv:2205.01580, big_vision's `posemb_sincos_2d`) and MAE
    (He et al. 2021, arXiv:2111.06377): a quarter of the channels each for [sin(x w), cos(x w), sin(y w),
    cos(y w)], x the column and y the row, with frequencies w_i = temperature^(-i / (dim/4 - 1)).
    """
    if dim % 4:
        raise ValueError(f"sincos_2d needs dim divisible by 4 (sin and cos for each of two axes), got {dim}")
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    omega = temperature ** (-torch.arange(dim // 4, dtype=torch.float64) / max(dim // 4 - 1, 1))   # (dim/4,)
    x = x.flatten()[:, None] * omega                                                              # (h*w, dim/4)
    y = y.flatten()[:, None] * omega
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1).float()                        # (h*w, dim)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping patches and project each linearly (ViT, Dosovitskiy et al. 2020,
    arXiv:2010.11929, Sec. 3.1, Eq. 1: x_p^i E), written as a Conv2d whose kernel and stride are the patch.

    `forward(x)`: (B, C, H, W) -> (B, N, dim) with N = (H / p) (W / p) in row-major order, or
    (B, dim, H / p, W / p) with `flatten=False`. H and W may differ from `img_size` if the patch divides them.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int | tuple[int, int] = 16,
                 in_chans: int = 3, dim: int = 768, flatten: bool = True):
        super().__init__()
        self.img_size, self.patch_size = _pair(img_size), _pair(patch_size)
        if any(s % p for s, p in zip(self.img_size, self.patch_size)):
            raise ValueError(f"img_size {self.img_size} must be divisible by patch_size {self.patch_size}")
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.in_chans, self.flatten = in_chans, flatten
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=self.patch_size, stride=self.patch_size)   # E

    def forward(self, x: Tensor) -> Tensor:
        dims = check_shape(x, "B C H W", C=self.in_chans)
        if dims["H"] % self.patch_size[0] or dims["W"] % self.patch_size[1]:
            raise ValueError(f"input: H and W must be divisible by the patch size {self.patch_size} "
                             f"(img_size {self.img_size}), got shape {tuple(x.shape)}")
        x = self.proj(x)                                                   # (B, dim, H/p, W/p)
        return rearrange(x, "b d h w -> b (h w) d") if self.flatten else x
