"""SIREN (Sitzmann et al. 2020, arXiv:2006.09661): implicit neural representations with periodic activations.
The sine layer with omega_0 and its principled initialisation (`sine.py`), SIREN and the ReLU / ReLU + positional
encoding baselines as one coordinate network (`models.py`), derivatives by autograd (`derivatives.py`), the
signals (`signals.py`), fitting values, gradients or Laplacians through the Trainer (`fitting.py`), the claims
and the benchmark against siren-pytorch. See README.md beside this file."""

from . import bench, claims, models  # noqa: F401  (registers the presets, claims and bench part)
from .derivatives import divergence, gradient, laplacian
from .fitting import Fit, fit, fitting_step
from .models import CoordinateMLP, Siren, positional_encoding, relu_mlp, siren_audio, siren_image, siren_small
from .sine import SineLayer, arcsine_cdf, ks_distance, sine_activations

__all__ = ["SineLayer", "Siren", "CoordinateMLP", "relu_mlp", "positional_encoding", "siren_image", "siren_audio",
           "siren_small", "gradient", "divergence", "laplacian", "fit", "fitting_step", "Fit", "arcsine_cdf",
           "ks_distance", "sine_activations"]
