"""Gradient Origin Networks (Bond-Taylor & Willcocks 2020, arXiv:2007.02798): latents without an encoder, as the
negative gradient of the reconstruction loss at the origin of latent space. The gradient-origin latent
(`origin.py`), the implicit and variational GONs on a SIREN decoder (`models.py`), the autoencoder baseline with
the same decoder (`autoencoder.py`), the claim and the benchmark. See README.md beside this file."""

from . import bench, claims, models  # noqa: F401  (registers the presets, the claim and the bench part)
from .autoencoder import ImplicitAutoencoder
from .models import ImplicitDecoding, ImplicitGON, VariationalGON
from .origin import gradient_origin

__all__ = ["gradient_origin", "ImplicitDecoding", "ImplicitGON", "VariationalGON", "ImplicitAutoencoder"]
