"""SIREN (Sitzmann et al. 2020, arXiv:2006.09661): the initialisation's bounds and Theorem 1 (arcsine activations
through depth), derivatives by autograd against the analytic ones of a one-layer SIREN, the positional encoding,
the finite-difference targets, parameter counts, losses that fall, the claims' quick runs and siren-pytorch."""

import math

import numpy as np
import pytest
import torch

import archzoo
from archzoo.papers.siren import CoordinateMLP, SineLayer, Siren, fit, gradient, laplacian, relu_mlp
from archzoo.papers.siren.bench import reference_siren
from archzoo.papers.siren.claims import init_activations
from archzoo.papers.siren.models import nyquist_frequencies, positional_encoding
from archzoo.papers.siren.signals import chirp_signal, coordinate_grid, image_derivatives, image_signal, psnr
from archzoo.papers.siren.sine import arcsine_cdf, ks_distance, normal_cdf


def test_sine_layers_draw_their_weights_within_the_papers_bounds():
    torch.manual_seed(0)
    first, hidden = SineLayer(2, 512, 30.0, is_first=True), SineLayer(256, 512, 30.0)
    for layer, bound in ((first, 1 / 2), (hidden, math.sqrt(6 / 256) / 30)):
        w = layer.linear.weight
        assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound          # U(-bound, bound), filled
        assert abs(float(w.detach().std()) - bound / math.sqrt(3)) < 0.02 * bound        # the std of a uniform


def test_the_output_layer_of_siren_is_linear_and_initialised_like_a_hidden_layer():
    torch.manual_seed(0)
    net = Siren(2, 256, 3, 1)
    assert isinstance(net.head, torch.nn.Linear) and len(net.net) == 4
    assert net.head.weight.abs().max() <= math.sqrt(6 / 256) / 30
    assert [layer.omega_0 for layer in net.net] == [30.0] * 4 and net.net[0].is_first


def test_activations_at_init_are_arcsine_through_10_layers_and_drift_with_the_default_init():
    # Theorem 1 / Fig. 7: with the paper's init each layer's activations follow arcsine(-1, 1); PyTorch's default
    # init of sin(Linear(x)) (c = 1, omega_0 = 1) shrinks them towards 0 with depth
    torch.manual_seed(0)
    cfg = type("Cfg", (), dict(depth=10, width=256))
    x = torch.rand(2048, 2) * 2 - 1
    paper = init_activations(cfg, "paper", x)
    ks = [ks_distance(a, arcsine_cdf) for _, a in paper]
    assert max(ks) < 0.08, ks
    for z, _ in paper[1:]:                  # hidden pre-activations: normal (std ~ sqrt(1 + 900 / (3 n)) with biases)
        assert ks_distance(z / z.std(), normal_cdf) < 0.08 and 1.2 < float(z.std()) < 1.8
    default = [ks_distance(a, arcsine_cdf) for _, a in init_activations(cfg, "default", x)]
    assert default[-1] > 0.3 and default[-1] > default[1] > default[0]


def test_ks_distance_of_arcsine_samples_is_small_and_of_uniform_ones_is_not():
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert ks_distance(torch.sin(math.pi * (u - 0.5)), arcsine_cdf) < 0.015            # sin of a uniform phase
    assert ks_distance(2 * u - 1, arcsine_cdf) > 0.1


def test_gradient_and_laplacian_of_a_one_layer_siren_equal_the_analytic_ones():
    # Phi(x) = v . sin(omega (W x + b)) + c: gradient omega W^T (v * cos(.)),
    # Laplacian -omega^2 sum_i v_i sin(.)_i |W_i|^2 (the derivatives of a SIREN are SIRENs, Sec. 3.1)
    torch.manual_seed(0)
    net = Siren(3, 16, 0, 1).double()
    x = (torch.rand(50, 3, dtype=torch.float64) * 2 - 1).requires_grad_()
    phi = net(x)
    layer, head = net.net[0], net.head
    w, v, omega = layer.linear.weight, head.weight[0], layer.omega_0
    z = layer.preactivation(x)                                                    # (50, 16)
    expected_grad = omega * (v * torch.cos(z)) @ w
    expected_lap = -(omega**2) * (v * torch.sin(z)) @ (w**2).sum(1, keepdim=True)
    torch.testing.assert_close(gradient(phi, x), expected_grad)
    torch.testing.assert_close(laplacian(phi, x), expected_lap)


def test_the_gradient_of_a_relu_network_is_piecewise_constant_so_its_laplacian_is_zero():
    torch.manual_seed(0)
    x = (torch.rand(64, 2, dtype=torch.float64) * 2 - 1).requires_grad_()
    net = relu_mlp(2, 16, 2, 1).double()
    assert torch.count_nonzero(laplacian(net(x), x)) == 0
    assert torch.count_nonzero(laplacian(Siren(2, 16, 2, 1).double()(x), x)) == 64


def test_derivatives_check_their_shapes():
    x = torch.rand(5, 2, requires_grad=True)
    with pytest.raises(ValueError, match=r"scalar field y \(\.\.\., 1\).*\(5, 2\)"):
        gradient(x * 2, x)


def test_positional_encoding_is_nerfs_and_has_the_nyquist_number_of_frequencies():
    p = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    feats = positional_encoding(p, 3)
    expected = [f(2**k * math.pi * c) for c in (0.3, -0.7) for f in (math.sin, math.cos) for k in range(3)]
    expected = [*expected[:6], 0.3, *expected[6:], -0.7]
    torch.testing.assert_close(feats[0], torch.tensor(expected, dtype=torch.float64))
    assert (nyquist_frequencies(256), nyquist_frequencies(128), nyquist_frequencies(32)) == (6, 5, 3)
    net = relu_mlp(2, 8, 1, 1, num_frequencies=5)
    assert net.net[0][0].in_features == 2 * 11


def test_parameter_counts_of_the_presets():
    # the authors' image and audio networks: Siren(in, 256, hidden_layers=3, 1, outermost_linear=True)
    counts = {name: sum(p.numel() for p in archzoo.create_model(name).parameters())
              for name in ("siren_image", "siren_audio", "siren_small")}
    assert counts == {"siren_image": 198_401, "siren_audio": 198_145, "siren_small": 8_577}
    assert archzoo.create_model("siren_audio").net[0].omega_0 == 3000.0
    assert sum(p.numel() for p in relu_mlp().parameters()) == 198_401                 # the same layer sizes
    assert sum(p.numel() for p in relu_mlp(num_frequencies=6).parameters()) == 198_401 + 24 * 256


def test_bad_coordinates_are_value_errors():
    net = Siren(2, 8, 1, 1)
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., D=2\), got \(4, 3\)"):
        net(torch.rand(4, 3))
    with pytest.raises(ValueError, match="floating-point"):
        net(torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="activation must be one of"):
        CoordinateMLP(activation="tanh")
    assert net(torch.rand(3, 7, 2, dtype=torch.float64)).shape == (3, 7, 1)


def test_image_derivatives_are_exact_on_a_quadratic_in_the_interior():
    side = 17
    x = coordinate_grid(side, side).double()
    values = (0.5 * x[:, :1] ** 2 - 0.25 * x[:, 1:] ** 2 + 0.3 * x[:, :1] * x[:, 1:]).float()
    grad, lap = image_derivatives(values, side)
    inner = ((x.abs() < 0.85).all(1))
    expected = torch.stack([x[:, 0] + 0.3 * x[:, 1], -0.5 * x[:, 1] + 0.3 * x[:, 0]], 1).float()
    torch.testing.assert_close(grad[inner], expected[inner], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lap[inner], torch.full_like(lap[inner], 0.5), atol=1e-4, rtol=1e-4)


def test_signals_are_in_range_and_the_chirp_sweeps_its_frequencies():
    coords, values = image_signal(32)
    assert coords.shape == (1024, 2) and values.shape == (1024, 1)
    assert coords.min() == -1 and coords.max() == 1 and -1 <= values.min() < values.max() <= 1
    t, a = chirp_signal(4096, f0=10.0, f1=100.0)
    assert a.abs().max() == 1 and t.shape == a.shape == (4096, 1)
    spectrum = lambda s: np.abs(np.fft.rfft(s * np.hanning(len(s))))                   # noqa: E731
    first, last = a[:512, 0].numpy(), a[-512:, 0].numpy()                             # 0.25 units of t each
    peak = lambda s: np.argmax(spectrum(s)) / 0.25                                     # noqa: E731 cycles per unit
    assert abs(peak(first) - 16) < 8 and abs(peak(last) - 94) < 8                    # f0 + 90 (t + 1)/2 mid-window


def test_psnr_of_a_known_error():
    target = torch.zeros(100, 1)
    assert psnr(target + 0.02, target) == pytest.approx(10 * math.log10(4 / 0.0004))


def test_fitting_values_and_gradients_lowers_the_loss_through_the_trainer():
    coords, values = image_signal(16)
    grad, _ = image_derivatives(values, 16)
    torch.manual_seed(0)
    values_fit = fit(Siren(2, 32, 1, 1), coords, values, steps=30, lr=1e-3)
    grad_fit = fit(Siren(2, 32, 1, 1), coords, values, steps=30, lr=1e-3, supervise="gradients", target=grad)
    assert values_fit.losses[-1] < 0.2 * values_fit.losses[0] and values_fit.psnr > 20
    assert grad_fit.losses[-1] < 0.5 * grad_fit.losses[0]
    with pytest.raises(ValueError, match="needs the target gradients"):
        fit(Siren(2, 8, 1, 1), coords, values, steps=1, lr=1e-3, supervise="gradients")


def test_a_siren_fits_a_generated_audio_clip():
    t, a = chirp_signal(1024, f0=5.0, f1=40.0)
    torch.manual_seed(0)
    result = fit(Siren(1, 64, 1, 1, first_omega_0=300.0), t, a, steps=40, lr=1e-3)
    assert result.losses[-1] < 0.1 * result.losses[0]


def test_quick_claims_run(quick_claim):
    fitting = quick_claim("siren", "image_fitting")["metrics"]
    assert set(fitting["best_psnr"]) == {"relu", "relu_pe", "siren"}
    assert fitting["parameters"]["siren"] == fitting["parameters"]["relu"]
    arcsine = quick_claim("siren", "arcsine_activations")["metrics"]
    assert len(arcsine["ks_to_arcsine"]["paper"]) == 10 and arcsine["ks_default_last_layer"] > 0.3
    poisson = quick_claim("siren", "poisson_reconstruction")["metrics"]
    assert set(poisson["best_psnr"]) == {"relu_pe", "siren"}


@pytest.mark.reference
def test_siren_equals_siren_pytorch_with_our_weights():
    pytest.importorskip("siren_pytorch")
    torch.manual_seed(0)
    ours, theirs = Siren(2, 32, 3, 1).double(), reference_siren(32).double()
    for ref_layer, layer in zip([*theirs.layers, theirs.last_layer], [*(s.linear for s in ours.net), ours.head]):
        ref_layer.weight.data.copy_(layer.weight)
        ref_layer.bias.data.copy_(layer.bias)
    x = torch.rand(100, 2, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(ours(x), theirs(x))
