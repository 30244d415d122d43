"""The Fourier neural operator (Li et al. 2020, arXiv:2010.08895, Sec. 3-5) and its presets.

    u = Q(v_T),   v_{t+1}(x) = sigma(W v_t(x) + (K v_t)(x)),   v_0 = P(a(x), x)                      (Eq. 2)

P lifts the input function and its coordinates to `width` channels point by point, T Fourier layers each add a
pointwise linear map W to the spectral convolution K (`SpectralConv1d/2d`, Eq. 4-5), and Q projects back point by
point (128 hidden units, as in the authors' code). Every part acts on frequencies or on single points, so one set
of weights maps functions sampled on any grid: resolution invariance (Sec. 5.4).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ...core.checks import as_model_dtype, check_shape
from ...registry import register_model
from .spectral import SpectralConv1d, SpectralConv2d

CONV = {1: nn.Conv1d, 2: nn.Conv2d}


class FourierLayer(nn.Module):
    """v -> sigma(W v + K v) (Eq. 2): K the spectral convolution (or any `integral` layer), W a 1x1 convolution."""

    def __init__(self, integral: nn.Module, width: int, dim: int, act_layer: Callable[[], nn.Module] | None):
        super().__init__()
        self.integral = integral                                   # K
        self.w = CONV[dim](width, width, 1)                        # W, pointwise (its bias is the layer's bias)
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, v: Tensor) -> Tensor:                        # (B, width, *grid)
        return self.act(self.w(v) + self.integral(v))


def grid_coordinates(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """The coordinates x_j = j / N of a uniform grid on [0, 1)^d (periodic: the same points at every resolution
    that divides another), as (1, d, *shape) channels."""
    axes = [torch.arange(n, device=like.device, dtype=like.dtype) / n for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]


class FNO(nn.Module):
    """FNO-1d or FNO-2d: (B, in_channels, *grid) -> (B, out_channels, *grid).

    `width` d_v, `modes` k_max per axis, `depth` T Fourier layers (no activation after the last one, as in the
    authors' code), `projection` the hidden width of Q, `padding` zeros appended to each spatial axis before the
    Fourier layers and cropped after (the authors' Darcy code pads 9 points because the domain is not periodic).
    `integral(width, dim)` replaces the spectral convolution K (default) by another layer: with a local convolution
    it is the CNN baseline (`fno_cnn_baseline`).
    """

    def __init__(self, dim: int = 1, in_channels: int = 1, out_channels: int = 1, width: int = 64, modes: int = 16,
                 depth: int = 4, projection: int = 128, padding: int = 0,
                 act_layer: Callable[[], nn.Module] = nn.GELU, integral: Callable[[int, int], nn.Module] | None = None):
        super().__init__()
        if dim not in CONV:
            raise ValueError(f"dim must be 1 or 2, got {dim}")
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.dim, self.in_channels, self.out_channels, self.width = dim, in_channels, out_channels, width
        self.modes, self.padding = modes, padding
        self.num_features = width
        spectral = integral or (lambda w, d: SpectralConv1d(w, w, modes) if d == 1 else SpectralConv2d(w, w, modes))
        self.lift = CONV[dim](in_channels + dim, width, 1)         # P: (a(x), x) -> v_0(x)
        self.layers = nn.Sequential(*(FourierLayer(spectral(width, dim), width, dim,
                                                   act_layer if t < depth - 1 else None) for t in range(depth)))
        self.project = nn.Sequential(CONV[dim](width, projection, 1), act_layer(),
                                     CONV[dim](projection, out_channels, 1))    # Q
        self.min_points = 1 if integral is not None else (2 * modes if dim == 2 else 2 * modes - 2)

    def forward(self, a: Tensor) -> Tensor:                        # (B, in_channels, *grid)
        pattern = "B C N" if self.dim == 1 else "B C H W"
        check_shape(a, pattern, C=self.in_channels)
        a = as_model_dtype(a, self)
        grid = a.shape[2:]
        if min(grid) + self.padding < self.min_points:
            raise ValueError(f"input: expected at least {self.min_points - self.padding} points per axis to keep "
                             f"{self.modes} Fourier modes, got a grid of {tuple(grid)}")
        x = grid_coordinates(tuple(grid), a).expand(a.shape[0], -1, *grid)
        v = self.lift(torch.cat([a, x], dim=1))                    # v_0: (B, width, *grid)
        if self.padding:
            v = nn.functional.pad(v, [0, self.padding] * self.dim)
        v = self.layers(v)                                         # v_T
        if self.padding:
            v = v[(..., *(slice(0, n) for n in grid))]
        return self.project(v)                                     # (B, out_channels, *grid)


def local_conv(kernel_size: int) -> Callable[[int, int], nn.Module]:
    """A circular convolution of `kernel_size` points in place of K: the CNN baseline's layer."""
    return lambda width, dim: CONV[dim](width, width, kernel_size, padding=kernel_size // 2, padding_mode="circular",
                                        bias=False)


OPERATOR = dict(num_classes=0, task="operator")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}      # the authors' code uses GELU; the paper's text says ReLU


def activation_layer(name: str) -> Callable[[], nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


@register_model(paper="fno", input_size=(1, 1024), **OPERATOR)
def fno1d_burgers(in_channels: int = 1, out_channels: int = 1, width: int = 64, modes: int = 16, depth: int = 4,
                  activation: str = "gelu") -> FNO:
    """FNO-1d of the Burgers experiment (Sec. 5.1; the authors' fourier_1d.py): width 64, 16 modes, 4 Fourier
    layers, Q with 128 hidden units. 549,569 real parameters (complex weights count twice)."""
    return FNO(1, in_channels, out_channels, width=width, modes=modes, depth=depth,
               act_layer=activation_layer(activation))


@register_model(paper="fno", input_size=(1, 85, 85), **OPERATOR)
def fno2d_darcy(in_channels: int = 1, out_channels: int = 1, width: int = 32, modes: int = 12, depth: int = 4,
                padding: int = 9, activation: str = "gelu") -> FNO:
    """FNO-2d of the Darcy experiment (Sec. 5.2; the authors' fourier_2d.py): width 32, 12 modes per axis (both
    signs along the first), 4 Fourier layers, 9 points of padding. 2,368,001 real parameters."""
    return FNO(2, in_channels, out_channels, width=width, modes=modes, depth=depth, padding=padding,
               act_layer=activation_layer(activation))


@register_model(paper="fno", input_size=(1, 1024), **OPERATOR)
def fno_cnn_baseline(in_channels: int = 1, out_channels: int = 1, width: int = 104, depth: int = 8,
                     kernel_size: int = 5) -> FNO:
    """The CNN of the claims (not a configuration of the paper): FNO-1d with K replaced by a circular convolution of
    5 points, 8 layers of width 104 (533,881 parameters, within 3% of `fno1d_burgers`)."""
    return FNO(1, in_channels, out_channels, width=width, depth=depth, integral=local_conv(kernel_size))
