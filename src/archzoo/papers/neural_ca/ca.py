r"""The neural cellular automaton of Growing Neural Cellular Automata (Mordvintsev, Randazzo, Niklasson & Levin,
Distill 2020, "Model" section).

Every cell of a 2-D grid holds a state of 16 real numbers: RGB, alpha (alive when alpha > 0.1) and 12 hidden
channels. One step of the CA, the same rule in every cell:

1. Perception ("Perception"): each channel is convolved with three fixed 3x3 filters, the identity and the
   Sobel estimates of d/dx and d/dy, giving a 48-dimensional perception vector per cell. Rotating the two
   Sobel filters by an angle theta rotates the gradient the cell perceives (the article's Experiment 4):

       K = [identity, cos(theta) S_x - sin(theta) S_y, sin(theta) S_x + cos(theta) S_y],
       S_x = [1, 2, 1]^T [-1, 0, 1] / 8,   S_y = S_x^T

2. Update rule ("Update rule"): a per-cell MLP, i.e. two 1x1 convolutions 48 -> 128 (ReLU) -> 16, gives an
   increment ds; its last layer starts at zero, so the untrained CA does nothing.
3. Stochastic cell update ("Stochastic cell update"): each cell applies ds only with probability `fire_rate`
   (0.5), like dropout on the update: no global clock synchronises the cells.
4. Living cell masking ("Living cell masking"): a cell is alive if any cell of its 3x3 neighbourhood has
   alpha > 0.1, before and after the update; cells that are not alive are set to zero.

The counts follow the article's code (Keras `Conv2D(128, 1, relu)`, `Conv2D(16, 1, kernel_initializer=zeros)`,
both with biases): 48 x 128 + 128 + 128 x 16 + 16 = 8,336 parameters ("~8,000" in the text).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import as_model_dtype, check_shape
from ...registry import register_model

RGBA = 4                    # channels 0-2: colour (premultiplied by alpha), channel 3: alpha
ALPHA = 3
ALIVE_THRESHOLD = 0.1       # "cells with alpha > 0.1 are 'mature'" and their neighbours are 'growing'


def perception_kernels(angle: float = 0.0, dtype=torch.float32) -> Tensor:
    """The three 3x3 filters (3, 3, 3): identity, and the Sobel d/dx and d/dy rotated by `angle` (radians)."""
    identity = torch.zeros(3, 3, dtype=dtype)
    identity[1, 1] = 1.0
    sobel_x = torch.outer(torch.tensor([1.0, 2.0, 1.0], dtype=dtype), torch.tensor([-1.0, 0.0, 1.0], dtype=dtype)) / 8
    sobel_y = sobel_x.T
    c, s = math.cos(angle), math.sin(angle)
    return torch.stack([identity, c * sobel_x - s * sobel_y, s * sobel_x + c * sobel_y])


def perceive(x: Tensor, angle: float = 0.0) -> Tensor:
    """The perception vector of every cell: (B, C, H, W) -> (B, 3C, H, W), channel 3c + k the k-th filter on
    channel c (the layout of TensorFlow's depthwise convolution in the article's code), zero padding outside."""
    channels = x.shape[1]
    kernel = perception_kernels(angle, x.dtype).to(x.device).repeat(channels, 1, 1)[:, None]   # (3C, 1, 3, 3)
    return F.conv2d(x, kernel, padding=1, groups=channels)


def alive_mask(x: Tensor, threshold: float = ALIVE_THRESHOLD) -> Tensor:
    """(B, C, H, W) -> (B, 1, H, W) bool: some cell of the 3x3 neighbourhood has alpha > `threshold`."""
    return F.max_pool2d(x[:, ALPHA:ALPHA + 1], 3, stride=1, padding=1) > threshold


class NeuralCA(nn.Module):
    """The growing neural CA: `forward(x)` is one step of the rule (see the module's docstring), `grow(x, steps)`
    runs `steps` of them. States are (B, channels, H, W); `fire_rate` is the probability that a cell updates."""

    def __init__(self, channels: int = 16, hidden: int = 128, fire_rate: float = 0.5):
        super().__init__()
        if channels <= ALPHA or hidden < 1:
            raise ValueError(f"need channels > {ALPHA} (RGBA + hidden) and hidden >= 1, got {channels}, {hidden}")
        if not 0.0 < fire_rate <= 1.0:
            raise ValueError(f"fire_rate must be in (0, 1], got {fire_rate}")
        self.channels, self.fire_rate = channels, fire_rate
        self.in_channels = self.out_channels = self.num_features = channels     # a state in, a state out
        self.update_rule = nn.Sequential(nn.Conv2d(3 * channels, hidden, 1), nn.ReLU(),   # 1x1: cell by cell
                                         nn.Conv2d(hidden, channels, 1))
        nn.init.zeros_(self.update_rule[-1].weight)          # "initialized with zeros": the initial CA does nothing
        nn.init.zeros_(self.update_rule[-1].bias)

    @property
    def default_input_size(self) -> tuple[int, int, int]:
        return (self.channels, 40, 40)

    def forward(self, x: Tensor, fire_rate: float | None = None, angle: float = 0.0) -> Tensor:
        """One step: (B, C, H, W) -> (B, C, H, W)."""
        check_shape(x, "B C H W", C=self.channels)
        x = as_model_dtype(x, self)
        fire_rate = self.fire_rate if fire_rate is None else fire_rate
        pre_life = alive_mask(x)                                            # (B, 1, H, W)
        ds = self.update_rule(perceive(x, angle))                           # (B, C, H, W)
        fire = torch.rand_like(x[:, :1]) <= fire_rate                       # stochastic cell update, (B, 1, H, W)
        x = x + ds * fire
        return x * (pre_life & alive_mask(x))                               # living cell masking

    def grow(self, x: Tensor, steps: int, angle: float = 0.0) -> Tensor:
        """`steps` steps of the CA from `x`."""
        for _ in range(steps):
            x = self(x, angle=angle)
        return x


@register_model(paper="neural_ca", input_size=(16, 40, 40), num_classes=0, task="operator")
def neural_ca_growing(channels: int = 16, hidden: int = 128, fire_rate: float = 0.5) -> NeuralCA:
    """The article's CA: 16 channels, update rule 48 -> 128 -> 16, fire rate 0.5 (8,336 parameters); one call is
    one step on a state (B, 16, H, W) (40 x 40 is the article's target size before padding)."""
    return NeuralCA(channels, hidden, fire_rate)
