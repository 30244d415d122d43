"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, NeurIPS): "ImageNet Classification with Deep Convolutional Neural
Networks". Five convolutional and three fully connected layers with ReLUs, local response normalization,
overlapping max pooling, dropout and the two-GPU connectivity as grouped convolutions."""

from . import bench, claims, models, response_normalization  # noqa: F401  (registers presets, layer, claim, bench pair)
from .models import AlexNet, alexnet, alexnet_small
from .response_normalization import LocalResponseNorm

__all__ = ["AlexNet", "LocalResponseNorm", "alexnet", "alexnet_small"]
