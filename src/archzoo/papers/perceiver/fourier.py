r"""Fourier position features (Jaegle et al. 2021, arXiv:2103.03206, Sec. 3.2 "Position encodings").

Each position coordinate x_d, scaled to [-1, 1], is encoded by K bands

    [sin(f_k \pi x_d), cos(f_k \pi x_d)]_{k=1..K}  followed by x_d itself,

where f_k is the k-th of K frequencies spaced equally between 1 and mu / 2 (mu: the max frequency, the Nyquist
frequency of the sampling rate: 224 for ImageNet). For a d-dimensional grid this gives d (2K + 1) channels per
position, which are concatenated (not added) to the input's own channels.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer


def frequency_bands(num_bands: int, max_freq: float, spacing: str = "linear") -> Tensor:
    """f_1 .. f_K from 1 to mu / 2: equally spaced as in Sec. 3.2 (`"linear"`), or log-spaced (`"log"`)."""
    if num_bands < 1 or max_freq < 2:
        raise ValueError(f"need num_bands >= 1 and max_freq >= 2, got {num_bands} and {max_freq}")
    if spacing == "linear":
        return torch.linspace(1.0, max_freq / 2, num_bands, dtype=torch.float64)
    if spacing == "log":
        return torch.logspace(0.0, math.log10(max_freq / 2), num_bands, dtype=torch.float64)
    raise ValueError(f"spacing must be 'linear' or 'log', got {spacing!r}")


def fourier_features(pos: Tensor, num_bands: int, max_freq: float, spacing: str = "linear") -> Tensor:
    """Positions (..., d) in [-1, 1] -> (..., d (2K + 1)): per coordinate [sin(f_k pi x_d)]_k, [cos(f_k pi x_d)]_k,
    then x_d."""
    f = frequency_bands(num_bands, max_freq, spacing).to(device=pos.device, dtype=pos.dtype)   # (K,)
    angles = pos.unsqueeze(-1) * f * math.pi                                  # (..., d, K): f_k pi x_d
    feats = torch.cat((angles.sin(), angles.cos(), pos.unsqueeze(-1)), dim=-1)  # (..., d, 2K + 1)
    return rearrange(feats, "... d k -> ... (d k)")


def grid_positions(shape: tuple[int, ...], device=None, dtype=torch.float32) -> Tensor:
    """The positions of a d-dimensional grid of `shape`, each axis spanning [-1, 1]: (*shape, d)."""
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


@register_layer(paper="perceiver")
class FourierPositionEncoding(nn.Module):
    """Turns an input on a d-dimensional grid into the Perceiver's byte array (Sec. 3.2).

    (B, C, *S) with len(S) = `input_axis` -> (B, M, C + d (2K + 1)), M = prod(S): the grid is flattened in
    row-major order and every element gets its grid position's Fourier features concatenated to its C channels.
    """

    def __init__(self, input_axis: int, num_bands: int, max_freq: float, spacing: str = "linear"):
        super().__init__()
        if input_axis < 1:
            raise ValueError(f"input_axis must be >= 1, got {input_axis}")
        frequency_bands(num_bands, max_freq, spacing)                    # validates the arguments
        self.input_axis, self.num_bands, self.max_freq, self.spacing = input_axis, num_bands, max_freq, spacing
        self.num_features = input_axis * (2 * num_bands + 1)

    def forward(self, x: Tensor) -> Tensor:                              # (B, C, *S)
        check_shape(x, "B C " + " ".join(f"S{i}" for i in range(self.input_axis)))
        pos = grid_positions(tuple(x.shape[2:]), device=x.device, dtype=x.dtype)          # (*S, d)
        pe = fourier_features(pos, self.num_bands, self.max_freq, self.spacing)           # (*S, d (2K + 1))
        pe = rearrange(pe, "... f -> (...) f").expand(x.shape[0], -1, -1)               # (B, M, d (2K + 1))
        return torch.cat((rearrange(x, "b c ... -> b (...) c"), pe), dim=-1)            # (B, M, C + d (2K + 1))
