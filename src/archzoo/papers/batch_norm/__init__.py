"""Batch Normalization (Ioffe & Szegedy 2015, arXiv:1502.03167): "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift". BN written out (Algorithms 1 and 2) for fully connected and
convolutional layers, the sigmoid MNIST network of Sec. 4.1 with and without BN, and the claims. See README.md."""

from . import batch_norm, bench, claims, models  # noqa: F401  (registers layers, presets, claims, bench pair)
from .batch_norm import BatchNorm, BatchNorm1d, BatchNorm2d
from .models import SigmoidMLP, mnist_mlp, mnist_mlp_bn

__all__ = ["BatchNorm", "BatchNorm1d", "BatchNorm2d", "SigmoidMLP", "mnist_mlp", "mnist_mlp_bn"]
