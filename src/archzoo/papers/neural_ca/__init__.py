"""Growing Neural Cellular Automata (Mordvintsev, Randazzo, Niklasson & Levin, Distill 2020): the CA with Sobel
perception, a zero-initialised per-cell update, stochastic updates and living cell masking (`ca.py`), the drawn
target, the seed, the loss and the damage (`target.py`), training through the Trainer with the sample pool and
normalised gradients (`training.py`), the claims and the benchmark entry. See README.md beside this file."""

from . import bench, ca, claims  # noqa: F401  (registers the preset, the claims and the bench part)
from .ca import NeuralCA, alive_mask, neural_ca_growing, perceive, perception_kernels
from .target import circle_masks, draw_target, pad_target, psnr, rgba_loss, seed_state, to_rgb
from .training import GrowthStep, NormalizeGradients, train_ca

__all__ = ["NeuralCA", "neural_ca_growing", "perceive", "perception_kernels", "alive_mask", "draw_target",
           "pad_target", "seed_state", "rgba_loss", "psnr", "circle_masks", "to_rgb", "GrowthStep",
           "NormalizeGradients", "train_ca"]
