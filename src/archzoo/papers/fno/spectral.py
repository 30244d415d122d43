"""The spectral convolution of the Fourier neural operator (Li et al. 2020, arXiv:2010.08895, Sec. 4, Eq. 4-5).

The kernel integral operator (K v)(x) = int kappa(x - y) v(y) dy is a convolution, so by the convolution theorem

    (K v)(x) = F^-1( R . (F v) )(x)                                                       (Eq. 4)

where F is the Fourier transform and R the Fourier transform of kappa, parametrised directly. On a uniform grid F is
the FFT; R keeps only the lowest `modes` frequencies (k <= k_max, Eq. 5) and is a complex (d_v x d_v) matrix per
kept frequency: (R . (F v))_{k, l} = sum_j R_{k, l, j} (F v)_{k, j}. Higher frequencies are set to zero. The weights
depend on frequencies, not grid points, so the same layer applies at every resolution.
"""

from __future__ import annotations

import torch
from einops import einsum
from torch import Tensor, nn

from ...registry import register_layer


def _complex_weight(in_channels: int, out_channels: int, *modes: int) -> nn.Parameter:
    """R as real and imaginary parts (..., 2), so that every parameter is real (safetensors, optimizers, counts as in
    the authors' `count_params`); initialised as the authors' code: uniform in [0, 1/(d_in d_out)) for both parts."""
    scale = 1.0 / (in_channels * out_channels)
    return nn.Parameter(scale * torch.rand(in_channels, out_channels, *modes, 2))


def _check_modes(modes: int, size: int, dim: str) -> None:
    if size // 2 + 1 < modes:
        raise ValueError(f"the grid must keep {modes} Fourier modes along {dim}: at least {2 * modes - 2} points, "
                         f"got {size}")


@register_layer(paper="fno")
class SpectralConv1d(nn.Module):
    """K v = irfft(R . rfft(v)) on (B, d_in, N), keeping frequencies 0..modes-1 (Eq. 4-5)."""

    def __init__(self, in_channels: int, out_channels: int, modes: int):
        super().__init__()
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        self.weight = _complex_weight(in_channels, out_channels, modes)          # R: (d_in, d_out, k_max, 2)

    def forward(self, v: Tensor) -> Tensor:                                     # (B, d_in, N)
        n = v.shape[-1]
        _check_modes(self.modes, n, "x")
        v_hat = torch.fft.rfft(v)[..., :self.modes]                              # (B, d_in, k_max)
        out = einsum(v_hat, torch.view_as_complex(self.weight), "b i k, i o k -> b o k")
        return torch.fft.irfft(out, n=n)              # (B, d_out, N): irfft zero-fills the frequencies >= k_max


@register_layer(paper="fno")
class SpectralConv2d(nn.Module):
    """K v = irfft2(R . rfft2(v)) on (B, d_in, H, W), keeping |k_1| < modes and 0 <= k_2 < modes (Eq. 4-5).

    The real FFT halves the last axis only, so the first axis keeps its lowest positive *and* negative frequencies:
    two weight blocks, for k_1 in [0, modes) and in [-modes, 0), as in the authors' code.
    """

    def __init__(self, in_channels: int, out_channels: int, modes1: int, modes2: int | None = None):
        super().__init__()
        modes2 = modes1 if modes2 is None else modes2
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, (modes1, modes2)
        self.weight_pos = _complex_weight(in_channels, out_channels, modes1, modes2)   # k_1 in [0, modes1)
        self.weight_neg = _complex_weight(in_channels, out_channels, modes1, modes2)   # k_1 in [-modes1, 0)

    def forward(self, v: Tensor) -> Tensor:                                     # (B, d_in, H, W)
        (m1, m2), (h, w) = self.modes, v.shape[-2:]
        if h < 2 * m1:
            raise ValueError(f"the grid must keep {m1} positive and negative modes along y: at least {2 * m1} "
                             f"points, got {h}")
        _check_modes(m2, w, "x")
        v_hat = torch.fft.rfft2(v)                                               # (B, d_in, H, W/2 + 1)
        out = v_hat.new_zeros(v.shape[0], self.out_channels, h, w // 2 + 1)
        for rows, weight in ((slice(0, m1), self.weight_pos), (slice(h - m1, h), self.weight_neg)):
            out[..., rows, :m2] = einsum(v_hat[..., rows, :m2], torch.view_as_complex(weight),
                                         "b i x y, i o x y -> b o x y")
        return torch.fft.irfft2(out, s=(h, w))                                   # (B, d_out, H, W)
