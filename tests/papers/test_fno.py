"""FNO (Li et al. 2020): the spectral convolution against a circular convolution and a DFT written out, resolution
invariance, the presets' parameter counts, a loss that falls, and neuraloperator's FNO after copying weights."""

import math

import pytest
import torch
from torch import nn

import archzoo
from archzoo.data import load_dataset
from archzoo.papers.fno import FNO, SpectralConv1d, SpectralConv2d
from archzoo.papers.fno.bench import neuralop_fno
from archzoo.papers.fno.claims import heat_error, relative_l2


def circular_conv(kernel: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(K v)_o(x) = sum_i sum_y kappa_{i,o}(y) v_i(x - y) on a periodic grid, a sum over shifts written out."""
    out = torch.zeros(v.shape[0], kernel.shape[1], *v.shape[2:], dtype=v.dtype)
    dims = tuple(range(2, v.dim()))
    for shift in torch.cartesian_prod(*(torch.arange(n) for n in v.shape[2:])).reshape(-1, len(dims)):
        shift = tuple(int(s) for s in shift)
        rolled = torch.roll(v, shifts=shift, dims=dims)                        # v(x - y)
        out += torch.einsum("io,bi...->bo...", kernel[(..., *shift)], rolled)
    return out


def test_spectral_conv_1d_with_every_mode_kept_is_a_circular_convolution():
    torch.manual_seed(0)
    n = 16
    kernel, v = torch.randn(3, 2, n, dtype=torch.float64), torch.randn(4, 3, n, dtype=torch.float64)
    layer = SpectralConv1d(3, 2, modes=n // 2 + 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.view_as_real(torch.fft.rfft(kernel)))         # R = F kappa (Eq. 4)
    torch.testing.assert_close(layer(v), circular_conv(kernel, v))


def test_spectral_conv_2d_with_every_mode_kept_is_a_circular_convolution():
    torch.manual_seed(1)
    h, w = 8, 6
    kernel, v = torch.randn(2, 3, h, w, dtype=torch.float64), torch.randn(2, 2, h, w, dtype=torch.float64)
    layer = SpectralConv2d(2, 3, modes1=h // 2, modes2=w // 2 + 1).double()
    r = torch.view_as_real(torch.fft.rfft2(kernel))
    with torch.no_grad():
        layer.weight_pos.copy_(r[:, :, :h // 2])                               # k_1 = 0 .. h/2 - 1
        layer.weight_neg.copy_(r[:, :, h // 2:])                               # k_1 = -h/2 .. -1
    torch.testing.assert_close(layer(v), circular_conv(kernel, v))


def test_spectral_conv_1d_multiplies_the_kept_modes_by_r_and_zeroes_the_others():
    torch.manual_seed(2)
    n, modes = 32, 5
    layer = SpectralConv1d(2, 3, modes).double()
    v = torch.randn(1, 2, n, dtype=torch.float64)
    x, k = torch.arange(n, dtype=torch.float64), torch.arange(n // 2 + 1, dtype=torch.float64)
    dft = torch.exp(-2j * math.pi * k[:, None] * x[None] / n)                  # F[k, x], written out
    v_hat, out_hat = v.to(dft.dtype) @ dft.T, layer(v).to(dft.dtype) @ dft.T
    r = torch.view_as_complex(layer.weight)                                    # (in, out, modes)
    expected = torch.einsum("bik,iok->bok", v_hat[..., :modes], r)
    torch.testing.assert_close(out_hat[..., 1:modes], expected[..., 1:])
    torch.testing.assert_close(out_hat[..., 0], expected[..., 0].real + 0j)   # a real signal has a real mean
    assert out_hat[..., modes:].abs().max() < 1e-12


def smooth_function(n: int, batch: int = 2) -> torch.Tensor:
    """A few low Fourier modes sampled at n points x_j = j / n: the same function at every resolution."""
    x = torch.arange(n, dtype=torch.float64) / n
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, batch, 1, 4, 1, generator=g, dtype=torch.float64)
    k = torch.arange(1, 5, dtype=torch.float64)[:, None]
    return (a * torch.cos(2 * math.pi * k * x) + b * torch.sin(2 * math.pi * k * x)).sum(2)   # (B, 1, n)


def test_spectral_conv_gives_the_same_function_at_64_and_256_points():
    layer = SpectralConv1d(1, 2, modes=16).double()
    coarse, fine = layer(smooth_function(64)), layer(smooth_function(256))
    torch.testing.assert_close(fine[..., ::4], coarse)


def test_the_same_fno_weights_apply_at_64_and_256_points():
    torch.manual_seed(4)
    model = archzoo.create_model("fno1d_burgers").double().eval()
    with torch.no_grad():
        coarse, fine = model(smooth_function(64)), model(smooth_function(256))
    assert fine.shape == (2, 1, 256)
    # pointwise layers commute with subsampling; only the aliasing of the nonlinearities' high harmonics differs
    assert float(relative_l2(fine[..., ::4], coarse)) < 1e-4


def real_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, count", [("fno1d_burgers", 549_569), ("fno2d_darcy", 2_368_001)])
def test_presets_have_the_parameter_count_of_the_authors_code(name, count):
    with torch.device("meta"):
        assert real_parameters(archzoo.create_model(name)) == count        # complex weights count twice


def test_the_cnn_baseline_is_within_3_percent_of_the_fno_size():
    with torch.device("meta"):
        fno, cnn = (real_parameters(archzoo.create_model(n)) for n in ("fno1d_burgers", "fno_cnn_baseline"))
    assert cnn == 533_881 and abs(cnn - fno) / fno < 0.03


def test_fno_2d_pads_and_crops_and_keeps_the_grid():
    model = archzoo.create_model("fno2d_darcy", width=8, modes=4)
    assert model(torch.randn(2, 1, 20, 17)).shape == (2, 1, 20, 17)


def test_relative_l2_loss_falls_on_a_fixed_batch_of_burgers(fixed_batch_losses):
    torch.manual_seed(5)
    a, u = load_dataset("burgers", n_train=20, n_test=1, resolution=64).train.tensors
    model = archzoo.create_model("fno1d_burgers", width=16, modes=8)
    losses = fixed_batch_losses(lambda: relative_l2(model(a), u), torch.optim.Adam(model.parameters(), 3e-3), 40)
    assert losses[-1] < 0.3 * losses[0]


def test_the_heat_equation_baseline_is_exact_without_the_nonlinearity():
    x = torch.arange(64) / 64
    a = torch.sin(2 * math.pi * x)[None, None]
    u = a * math.exp(-0.1 * (2 * math.pi) ** 2)                               # u_t = 0.1 u_xx from sin(2 pi x)
    assert heat_error(torch.utils.data.TensorDataset(a, u)) < 1e-6


def test_bad_inputs_are_value_errors_naming_what_was_expected():
    model = archzoo.create_model("fno1d_burgers")
    with pytest.raises(ValueError, match=r"expected shape \(B, C=1, N\), got \(2, 2, 64\)"):
        model(torch.randn(2, 2, 64))
    with pytest.raises(ValueError, match="at least 30 points per axis to keep 16 Fourier modes"):
        model(torch.randn(2, 1, 16))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.ones(2, 1, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="dim must be 1 or 2"):
        FNO(dim=3)


def test_quick_claims_report_errors_for_both_resolutions_and_both_models(quick_claim):
    record = quick_claim("fno", "super_resolution")
    assert set(record["metrics"]["mean"]) == {"FNO", "CNN"}
    assert all(0 < v < 10 for m in record["metrics"]["mean"].values() for v in m.values())


# ----------------------------------------------------------------------------- neuraloperator (pip neuraloperator)


@pytest.mark.reference
def test_fno_1d_equals_neuraloperator_fno_after_copying_weights():
    torch.manual_seed(6)
    pytest.importorskip("neuralop")
    ours = archzoo.create_model("fno1d_burgers", activation="relu").double()
    ref = neuralop_fno(ours)
    a = torch.randn(3, 1, 64, dtype=torch.float64)
    torch.testing.assert_close(ref(a), ours(a))


@pytest.mark.reference
def test_fno_2d_equals_neuraloperator_fno_after_copying_weights():
    torch.manual_seed(7)
    pytest.importorskip("neuralop")
    ours = archzoo.create_model("fno2d_darcy", width=8, modes=6, padding=0, activation="relu").double()
    ref = neuralop_fno(ours)
    a = torch.randn(2, 1, 20, 18, dtype=torch.float64)
    torch.testing.assert_close(ref(a), ours(a))
