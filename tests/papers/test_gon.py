"""Gradient Origin Networks (Bond-Taylor & Willcocks 2020, arXiv:2007.02798): the latent is the negative gradient
of the reconstruction loss at the origin (against autograd written out and finite differences, float64), each
example's own, and in the graph when training (Eq. 4); the decoder is SIREN's; parameter counts; losses that
fall; the variational GON's KL; the claim's quick run."""

import pytest
import torch

import archzoo
from archzoo.papers.gon import ImplicitAutoencoder, ImplicitGON, VariationalGON, gradient_origin
from archzoo.papers.siren import Siren


def tiny_gon(cls=ImplicitGON, **kw) -> ImplicitGON:
    torch.manual_seed(0)
    return cls(**(dict(num_latent=3, hidden_features=8, hidden_layers=1, omega_0=3.0) | kw)).double()


def images(b=2, c=1, h=5, w=3, seed=1) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def written_out_loss(gon: ImplicitGON, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """sum_b sum_pixels (F(c, z_b) + 0.5 - x_b(c))^2 with the coordinate grid built by hand (rows, then columns;
    5 x 3 points are exact in float32, the precision of `coordinate_grid`)."""
    b, _, h, w = x.shape
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, h, dtype=x.dtype), torch.linspace(-1, 1, w, dtype=x.dtype),
                                indexing="ij")
    coords = torch.stack([rows, cols], -1).reshape(1, h * w, 2).expand(b, -1, -1)
    out = gon.decoder(torch.cat([coords, z[:, None].expand(-1, h * w, -1)], -1)) + 0.5       # (B, H W, C)
    return (out - x.flatten(2).transpose(1, 2)).pow(2).sum()


def test_the_latent_is_the_negative_gradient_of_the_loss_at_the_origin():
    gon, x = tiny_gon(origin_step=1.0), images()                 # Eq. 3 as written: a unit step
    z0 = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(written_out_loss(gon, x, z0), z0)
    torch.testing.assert_close(gon.latent(x), -grad, rtol=1e-12, atol=1e-12)
    h, eye = 1e-6, torch.eye(3, dtype=torch.float64)          # central differences of each example's loss
    with torch.no_grad():
        fd = torch.stack([torch.stack([(gon.reconstruction_loss(x, h * eye[i].expand(2, 3))
                                        - gon.reconstruction_loss(x, -h * eye[i].expand(2, 3))) / (2 * h)
                                       for i in range(3)], -1)])[0]
    torch.testing.assert_close(gon.latent(x), -fd, rtol=1e-7, atol=1e-8)
    gon.origin_step = 1 / 64                                      # the authors' step (their batch-mean loss)
    torch.testing.assert_close(gon.latent(x), -grad / 64, rtol=1e-12, atol=1e-12)


def test_each_latent_depends_only_on_its_own_image():
    gon, x = tiny_gon(), images(b=3)
    alone = torch.cat([gon.latent(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(gon.latent(x), alone, rtol=1e-12, atol=1e-12)


def test_training_differentiates_through_the_gradient_and_inference_needs_no_graph():
    gon, x = tiny_gon(), images()
    params = list(gon.parameters())
    through = torch.autograd.grad(gon.loss(x), params)                                   # Eq. 4: z in the graph
    z = gon.latent(x).detach()
    frozen = torch.autograd.grad(gon.reconstruction_loss(x, z).mean(), params)
    assert max((a - b).abs().max() for a, b in zip(through, frozen)) > 1e-3
    with torch.no_grad():
        y = gon(x)
    assert not y.requires_grad and y.shape == x.shape
    torch.testing.assert_close(y, gon.decode(z, (5, 3)), rtol=1e-12, atol=1e-12)


def test_gradient_origin_of_a_quadratic_loss_is_the_target():
    # L(z) = |z - t|^2 / 2 has gradient -t at the origin: one step of size 1 from 0 lands on t
    t = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(gradient_origin(lambda z: 0.5 * (z - t).pow(2).sum(1), (4, 6), dtype=t.dtype), t)


def test_the_decoder_is_siren_and_shared_with_the_autoencoder():
    gon, ae = tiny_gon(), ImplicitAutoencoder(img_size=5, num_latent=3, hidden_features=8, hidden_layers=1,
                                              omega_0=3.0).double()
    assert type(gon.decoder) is type(ae.decoder) is Siren
    ae.decoder.load_state_dict(gon.decoder.state_dict())
    z = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(ae.decode(z, (5, 5)), gon.decode(z, (5, 5)), rtol=0, atol=0)


def test_parameter_counts_of_the_presets():
    # the authors' GON_Implicit.py: SIREN [2 + 32, 256, 256, 256, 256, 1]
    counts = {name: sum(p.numel() for p in archzoo.create_model(name).parameters())
              for name in ("gon_implicit", "gon_implicit_small", "gon_variational_small")}
    assert counts == {"gon_implicit": 34 * 256 + 256 + 3 * (256 * 256 + 256) + 257,            # 206,593
                      "gon_implicit_small": 34 * 64 + 64 + 2 * (64 * 64 + 64) + 65,              # 10,625
                      "gon_variational_small": 10_625 + 2 * (32 * 32 + 32)}                      # 12,737
    assert counts["gon_implicit"] == 206_593


@pytest.mark.parametrize("cls, fraction", [(ImplicitGON, 0.5), (VariationalGON, 0.8)])   # the KL keeps a floor
def test_a_gons_loss_falls_on_a_fixed_batch(cls, fraction, fixed_batch_losses):
    gon, x = tiny_gon(cls, hidden_features=16, omega_0=30.0), images(b=4, h=6, w=6)
    torch.manual_seed(0)
    losses = fixed_batch_losses(lambda: gon.loss(x), torch.optim.Adam(gon.parameters(), 1e-2), 40)
    assert sum(losses[-5:]) / 5 < fraction * losses[0], losses


def test_the_variational_loss_is_reconstruction_plus_the_gaussian_kl():
    gon, x = tiny_gon(VariationalGON), images()
    mu, logvar = gon.posterior(x)
    torch.manual_seed(3)
    loss = gon.loss(x)
    torch.manual_seed(3)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(loss, (gon.reconstruction_loss(x, z) + kl).mean())
    torch.testing.assert_close(gon.eval().latent(x), mu)                                  # eval: the mean


def test_the_autoencoder_refuses_images_of_another_size():
    ae = ImplicitAutoencoder(img_size=28)
    with pytest.raises(ValueError, match="expected shape"):
        ae(torch.rand(2, 1, 32, 32))


def test_quick_claim_reports_both_models_at_their_own_rates(quick_claim):
    metrics = quick_claim("gon", "beats_autoencoder")["metrics"]      # run once (tests/test_claims_quick.py)
    assert set(metrics["test_mse"]) == set(metrics["best_lr"]) == {"gon", "ae_linear", "ae_mlp"}
    parameters = metrics["parameters"]                                           # the encoders' own parameters
    assert parameters["ae_mlp"] > parameters["ae_linear"] > parameters["gon"]
    assert all(0 < v < 1 for v in metrics["test_mse"].values())
