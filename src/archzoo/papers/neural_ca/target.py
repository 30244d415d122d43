r"""The target pattern, the seed, the loss and the damage of Growing Neural Cellular Automata (Distill 2020,
"Experiment 1-3").

The article grows 40 x 40 emoji (a lizard, ...) downloaded from Noto Emoji, padded by 16 cells on each side. We
draw our own emoji-like RGBA pattern with `skimage.draw` (no download): an asymmetric smiling face with a leaf,
anti-aliased by drawing at 4x and averaging, colours premultiplied by alpha as in the article's code
(`img[..., :3] *= img[..., 3:]`), so that a dead cell (all zeros) is a transparent pixel.

The seed is a single cell in the centre with alpha and every hidden channel at 1 (RGB 0). The loss is the mean
squared error between the RGBA channels of the grown state and the target, per sample (`rgba_loss`). Damage
erases a random disc of cells (the article's `make_circle_masks`: centre uniform in [-0.5, 0.5]^2 and radius in
[0.1, 0.4] of the half-width of the grid).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.draw import disk, ellipse, polygon
from torch import Tensor

from .ca import RGBA

SUPERSAMPLE = 4


def draw_target(size: int = 16) -> Tensor:
    """An emoji-like RGBA pattern (4, size, size) in [0, 1], colours premultiplied by alpha: a yellow face with
    dark eyes, a red smile, a pink cheek and a green leaf on its top-right (asymmetric, so that every part of it
    differs from the others)."""
    if size < 8:
        raise ValueError(f"the target needs at least 8 x 8 cells, got size={size}")
    n = size * SUPERSAMPLE
    img = np.zeros((n, n, 4))
    shape = (n, n)

    def fill(rr_cc, rgb):
        img[rr_cc] = (*rgb, 1.0)

    c, r = 0.54 * n, 0.42 * n                                               # the face: a disc low in the box
    fill(disk((c, 0.48 * n), r, shape=shape), (1.0, 0.8, 0.2))
    leaf = np.array([0.02, 0.16, 0.30, 0.14]) * n, np.array([0.80, 0.98, 0.78, 0.62]) * n   # rows, columns
    fill(polygon(*leaf, shape), (0.2, 0.7, 0.2))
    for col in (0.33, 0.62):                                                # the eyes
        fill(ellipse(0.44 * n, col * n, 0.09 * n, 0.05 * n, shape=shape), (0.25, 0.15, 0.1))
    mouth = ellipse(0.68 * n, 0.48 * n, 0.1 * n, 0.2 * n, shape=shape)
    below = mouth[0] >= 0.68 * n                                            # the lower half of an ellipse: a smile
    fill((mouth[0][below], mouth[1][below]), (0.8, 0.1, 0.1))
    fill(disk((0.62 * n, 0.22 * n), 0.06 * n, shape=shape), (1.0, 0.5, 0.5))   # one cheek
    # anti-aliasing; the empty sub-pixels have RGB 0, so the averaged colours come out premultiplied by alpha
    img = img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 4).mean((1, 3))
    return torch.from_numpy(img).float().permute(2, 0, 1).contiguous()     # (4, size, size)


def pad_target(target: Tensor, padding: int) -> Tensor:
    """The target (4, h, w) in the middle of a grid with `padding` dead cells on each side."""
    return torch.nn.functional.pad(target, (padding,) * 4)


def seed_state(height: int, width: int, channels: int = 16, batch: int = 1) -> Tensor:
    """(batch, channels, height, width) zeros but the central cell: alpha and hidden channels 1, RGB 0."""
    x = torch.zeros(batch, channels, height, width)
    x[:, RGBA - 1:, height // 2, width // 2] = 1.0
    return x


def rgba_loss(x: Tensor, target: Tensor) -> Tensor:
    """Per-sample MSE between the RGBA channels of the states (B, C, H, W) and the target (4, H, W): (B,)."""
    return (x[:, :RGBA] - target).square().mean((1, 2, 3))


def psnr(x: Tensor, target: Tensor) -> Tensor:
    """Per-sample PSNR (dB) of the RGBA channels clipped to [0, 1] against the target: 10 log10(1 / MSE)."""
    return -10 * torch.log10(rgba_loss(x.clamp(0, 1), target).clamp_min(1e-10))


def circle_masks(n: int, height: int, width: int, generator: torch.Generator | None = None) -> Tensor:
    """(n, 1, height, width) bool discs to erase, as in the article's `make_circle_masks`: on coordinates in
    [-1, 1], centre uniform in [-0.5, 0.5]^2 and radius uniform in [0.1, 0.4]."""
    y = torch.linspace(-1, 1, height)[:, None]
    x = torch.linspace(-1, 1, width)[None]
    centre = torch.rand(n, 2, 1, 1, generator=generator) - 0.5
    radius = 0.3 * torch.rand(n, 1, 1, generator=generator) + 0.1
    inside = (x - centre[:, 0]).square() + (y - centre[:, 1]).square() < radius.square()   # (n, H, W)
    return inside[:, None]


def to_rgb(x: Tensor) -> Tensor:
    """Premultiplied RGBA of states (B, C, H, W) over a white background, (B, 3, H, W) in [0, 1] (the article's
    `to_rgb`: 1 - alpha + rgb)."""
    rgb, alpha = x[:, :3].clamp(0, 1), x[:, 3:4].clamp(0, 1)
    return (1.0 - alpha + rgb).clamp(0, 1)
