r"""Implicit and variational GONs on a SIREN decoder (Bond-Taylor & Willcocks 2020, arXiv:2007.02798, Sec. 3-3.2).

The implicit GON (Sec. 3.1, "Implicit GONs") represents an image as a function of its pixel coordinates c in
[-1, 1]^2: a SIREN (Sitzmann et al. 2020; `archzoo.papers.siren.Siren`) maps the coordinates concatenated with
the latent, F(c, z), to the pixel's value, so one network decodes every image at any resolution. The authors'
image network is the SIREN (2 + 32) -> 256 -> 256 -> 256 -> 256 -> C with omega_0 = 30, its last layer adding
0.5 (images in [0, 1]). The reconstruction loss is the squared error summed over pixels and channels (Eq. 2),
the latent is the negative gradient at the origin (Eq. 3, `origin.gradient_origin`) and training minimises the
loss of the decoded latent (Eq. 4).

The step: Eq. 3 is a step of size 1 on the loss, but the authors' code takes it on the loss averaged over a batch
of 64, i.e. a step of 1/64 on each example's loss. That scale matters for a SIREN, whose first layer multiplies
its inputs by omega_0 = 30: with a unit step on a 28 x 28 image's summed loss the latents start ~50x larger
and the GON barely trains (test MSE 0.138 after 50 steps against 0.038, our calibration). We keep the
authors' effective step, `origin_step = 1/64`, fixed per example, so that a latent never depends on the batch.

The variational GON (Sec. 3.2) maps the same gradient through two linear maps to the mean and log-variance of
q(z|x), samples z by reparameterisation and minimises the negative ELBO, L(x, F(z)) + KL(q(z|x) || N(0, I)).
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from ...core.checks import check_image
from ...registry import register_model
from ..siren import Siren
from ..siren.signals import coordinate_grid
from .origin import gradient_origin

ORIGIN_STEP = 1 / 64    # the authors' effective step on each example's loss (a unit step on a batch-mean of 64)
OFFSET = 0.5            # the authors' last layer adds 0.5, so that the decoder starts in the middle of [0, 1]
RECONSTRUCTION_CFG = dict(input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=0,
                          task="image-reconstruction")          # images (B, C, H, W) in [0, 1] -> reconstructions


class ImplicitDecoding(nn.Module):
    """The decoder shared by the GONs and the autoencoder baseline: a SIREN F(c, z) over the pixel coordinates c
    concatenated with the latent z, and the reconstruction loss of Eq. 2."""

    def __init__(self, num_latent: int = 32, hidden_features: int = 256, hidden_layers: int = 3, in_chans: int = 1,
                 omega_0: float = 30.0):
        super().__init__()
        if num_latent < 1:
            raise ValueError(f"num_latent must be >= 1, got {num_latent}")
        self.num_latent, self.in_chans = num_latent, in_chans
        self.decoder = Siren(2 + num_latent, hidden_features, hidden_layers, in_chans, omega_0, omega_0)

    def decode(self, z: Tensor, size: tuple[int, int]) -> Tensor:      # (B, latent) -> (B, C, H, W)
        """F(c, z) + 0.5 at every pixel coordinate c of an H x W grid in [-1, 1]^2."""
        h, w = size
        coords = coordinate_grid(h, w).to(z)                            # (H W, 2)
        inputs = torch.cat([repeat(coords, "n d -> b n d", b=len(z)),
                            repeat(z, "b k -> b n k", n=h * w)], dim=-1)  # (B, H W, 2 + latent)
        return rearrange(self.decoder(inputs) + OFFSET, "b (h w) c -> b c h w", h=h)

    def reconstruction_loss(self, x: Tensor, z: Tensor) -> Tensor:       # (B, C, H, W), (B, latent) -> (B,)
        """L(x, F(z)): the squared error summed over pixels and channels, per example (Eq. 2, the authors' loss)."""
        return (self.decode(z, x.shape[-2:]) - x).pow(2).flatten(1).sum(1)

    def check(self, x: Tensor) -> Tensor:
        return check_image(x, self, C=self.in_chans)


class ImplicitGON(ImplicitDecoding):
    """The implicit GON (Sec. 3.1): no encoder; `latent(x)` is -origin_step grad_{z0} L(x, F(z0)) at z0 = 0 (Eq. 3),
    `forward(x)` the reconstruction F(z) (B, C, H, W) and `loss(x)` the training loss L(x, F(z)) (Eq. 4), the mean
    over the batch of the per-example losses."""

    def __init__(self, num_latent: int = 32, hidden_features: int = 256, hidden_layers: int = 3, in_chans: int = 1,
                 omega_0: float = 30.0, origin_step: float = ORIGIN_STEP):
        super().__init__(num_latent, hidden_features, hidden_layers, in_chans, omega_0)
        self.origin_step = origin_step

    def latent(self, x: Tensor) -> Tensor:                               # (B, C, H, W) -> (B, latent)
        x = self.check(x)
        return self.origin_step * gradient_origin(lambda z0: self.reconstruction_loss(x, z0),
                                                  (len(x), self.num_latent), dtype=x.dtype, device=x.device)

    def forward(self, x: Tensor) -> Tensor:                              # (B, C, H, W) -> (B, C, H, W)
        return self.decode(self.latent(x), x.shape[-2:])

    def loss(self, x: Tensor) -> Tensor:
        x = self.check(x)
        return self.reconstruction_loss(x, self.latent(x)).mean()


class VariationalGON(ImplicitGON):
    """The variational GON (Sec. 3.2): the negative gradient at the origin, through two linear maps, gives the
    mean and log-variance of q(z|x) = N(mu, diag(sigma^2)); z = mu + sigma * eps (reparameterisation) and
    `loss(x)` is the negative ELBO, L(x, F(z)) + KL(q(z|x) || N(0, I)), averaged over the batch. In eval mode
    z = mu."""

    def __init__(self, num_latent: int = 32, hidden_features: int = 256, hidden_layers: int = 3, in_chans: int = 1,
                 omega_0: float = 30.0, origin_step: float = ORIGIN_STEP):
        super().__init__(num_latent, hidden_features, hidden_layers, in_chans, omega_0, origin_step)
        self.to_mu, self.to_logvar = nn.Linear(num_latent, num_latent), nn.Linear(num_latent, num_latent)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:            # (B, C, H, W) -> 2 x (B, latent)
        """(mu, log sigma^2) of q(z|x), linear in the gradient-origin latent."""
        g = super().latent(x)                                            # Eq. 3, (B, latent)
        return self.to_mu(g), self.to_logvar(g)

    def latent(self, x: Tensor) -> Tensor:
        mu, logvar = self.posterior(x)
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu

    def loss(self, x: Tensor) -> Tensor:
        x = self.check(x)
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()             # reparameterisation
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)        # KL(N(mu, sigma^2) || N(0, I))
        return (self.reconstruction_loss(x, z) + kl).mean()


@register_model(paper="gon", **RECONSTRUCTION_CFG)
def gon_implicit(**kwargs) -> ImplicitGON:
    """The authors' implicit GON: SIREN (2 + 32) -> 4 x 256 -> 1 with omega_0 = 30 (their GON_Implicit.py)."""
    return ImplicitGON(**(dict(num_latent=32, hidden_features=256, hidden_layers=3) | kwargs))


@register_model(paper="gon", **RECONSTRUCTION_CFG)
def gon_implicit_small(**kwargs) -> ImplicitGON:
    """A small implicit GON for 28 x 28 images, the claim's: SIREN (2 + 32) -> 3 x 64 -> 1."""
    return ImplicitGON(**(dict(num_latent=32, hidden_features=64, hidden_layers=2) | kwargs))


@register_model(paper="gon", **RECONSTRUCTION_CFG)
def gon_variational_small(**kwargs) -> VariationalGON:
    """The variational GON of Sec. 3.2 on the decoder of `gon_implicit_small`."""
    return VariationalGON(**(dict(num_latent=32, hidden_features=64, hidden_layers=2) | kwargs))
