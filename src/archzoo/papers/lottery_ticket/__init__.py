"""The Lottery Ticket Hypothesis (Frankle & Carbin 2018, arXiv:1803.03635): dense networks contain sparse
subnetworks ("winning tickets") that, reset to their initial weights, train to the dense network's accuracy.
Masks as parametrizations (`pruning`), iterative magnitude pruning with rewinding as a Trainer hook (`ticket`),
the LeNet-300-100 and Conv-2/4/6 presets (`models`) and the claim on Fashion-MNIST. See README.md beside this file."""

from . import claims, models, pruning, ticket  # noqa: F401  (registers the presets and the claim)
from .models import PAPER_TRAINING, ConvNet, LeNet300100, conv2, conv4, conv6, lenet_300_100
from .pruning import apply_masks, layer_rates, magnitude_masks, masks_of, weights_left
from .ticket import IterativeMagnitudePruning

__all__ = ["PAPER_TRAINING", "ConvNet", "IterativeMagnitudePruning", "LeNet300100", "apply_masks", "conv2", "conv4",
           "conv6", "layer_rates", "lenet_300_100", "magnitude_masks", "masks_of", "weights_left"]
