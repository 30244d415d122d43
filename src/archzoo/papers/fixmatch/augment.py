r"""FixMatch's two augmentations (Sohn et al. 2020, arXiv:2001.07685, Sec. 2.3 and Table 12), on image batches.

Every function takes a batch `x` (B, C, H, W) with values in [0, 1] and returns a new batch of the same shape,
still in [0, 1]; the random ones draw from an explicit `torch.Generator`, so that a training step's views are a
pure function of its seed (a resumed run sees the same views).

- Weak augmentation alpha (Sec. 2.3): a horizontal flip with probability 1/2 and a translation by up to 12.5% of
  the side in each direction (reflection padding, as in the authors' code): `weak_augment`.
- Strong augmentation A: RandAugment with FixMatch's random magnitudes (Sec. 2.3, Table 12): each image gets
  `n = 2` operations drawn uniformly from `RANDAUGMENT_OPS`, each with a magnitude drawn uniformly from the op's
  range in Table 12, then Cutout: `strong_augment`.

Each op `op(x, v)` applies per-sample magnitudes `v` (B,) in the op's own units (a blend factor, degrees, a
fraction of the side, bits, a threshold). The blend ops follow PIL's `ImageEnhance` (the library the authors' code
calls): factor 1 is the identity, 0 the degenerate image (black, grey, blurred). Grey levels are quantised to 8
bits where the op is defined on a histogram or on bits (Equalize, Posterize), as PIL does on its uint8 images.
Geometric ops fill what comes in from outside the image with 0 (Fashion-MNIST's background).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.checks import check_shape

LEVELS = 255                                            # 8-bit grey levels, as in PIL's images


def check_batch(x: Tensor, v: Tensor | None = None) -> Tensor:
    """`x` must be a float batch (B, C, H, W); `v`, when given, one magnitude per image (B,)."""
    dims = check_shape(x, "B C H W", name="images")
    if not x.is_floating_point():
        raise ValueError(f"images: expected a floating-point batch with values in [0, 1], got {x.dtype}")
    if v is not None and tuple(v.shape) != (dims["B"],):
        raise ValueError(f"magnitudes: expected one per image, shape ({dims['B']},), got {tuple(v.shape)}")
    return x


def per_image(v: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1), to broadcast a per-image value over its pixels."""
    return v.view(-1, 1, 1, 1)


def blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL's `Image.blend(degenerate, x, factor)`: degenerate + factor (x - degenerate), clipped to [0, 1]."""
    return (degenerate + per_image(factor) * (x - degenerate)).clamp(0.0, 1.0)


def grey(x: Tensor) -> Tensor:
    """The luma (ITU-R 601-2, PIL's `convert("L")`) of an RGB batch, (B, 1, H, W); a grey batch is its own."""
    if x.shape[1] != 3:
        return x
    return torch.einsum("bchw,c->bhw", x, x.new_tensor([0.299, 0.587, 0.114])).unsqueeze(1)


def quantise(x: Tensor) -> Tensor:
    """Values in [0, 1] -> integer grey levels 0..255 (int64)."""
    return (x.clamp(0.0, 1.0) * LEVELS).round().long()


# ----------------------------------------------------------------------------- the ops of Table 12


def identity(x: Tensor, v: Tensor) -> Tensor:
    """Identity: returns the original image."""
    return check_batch(x, v).clone()


def auto_contrast(x: Tensor, v: Tensor) -> Tensor:
    """AutoContrast: each channel of each image is stretched so that its darkest pixel is black and its lightest
    white (a flat channel stays as it is). `v` is unused (the op has no magnitude)."""
    check_batch(x, v)
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)   # (B, C, 1, 1)
    span = high - low
    flat = span <= 0
    return torch.where(flat, x, (x - low) / torch.where(flat, torch.ones_like(span), span))


def brightness(x: Tensor, v: Tensor) -> Tensor:
    """Brightness B: a blend with a black image; B = 0 is black, B = 1 the original image."""
    return blend(torch.zeros_like(check_batch(x, v)), x, v)


def color(x: Tensor, v: Tensor) -> Tensor:
    """Color C: a blend with the image's grey version; C = 0 is black and white, C = 1 the original. A grey
    image (C = 1 channel, Fashion-MNIST) is its own grey version, so on it Color is the identity for every C."""
    return blend(grey(check_batch(x, v)).expand_as(x), x, v)


def contrast(x: Tensor, v: Tensor) -> Tensor:
    """Contrast C: a blend with a uniform grey image at the image's mean grey level; C = 0 is that grey image,
    C = 1 the original."""
    mean = grey(check_batch(x, v)).mean((1, 2, 3), keepdim=True)         # (B, 1, 1, 1)
    return blend(mean.expand_as(x), x, v)


def equalize(x: Tensor, v: Tensor) -> Tensor:
    """Equalize: each channel's 8-bit histogram is equalised: level l goes to (cdf(l) - cdf_min) / (N - cdf_min),
    with cdf the cumulative count and cdf_min that of the darkest level present; the output levels are then as
    evenly spread as the image's distinct levels allow (a flat histogram). A flat channel stays as it is. `v` is
    unused (the op has no magnitude)."""
    check_batch(x, v)
    b, c, h, w = x.shape
    levels = quantise(x).flatten(2)                                        # (B, C, HW)
    hist = torch.zeros(b, c, LEVELS + 1, dtype=x.dtype, device=x.device)
    hist.scatter_add_(2, levels, torch.ones_like(levels, dtype=x.dtype))  # (B, C, 256) pixel counts per level
    cdf = hist.cumsum(2)                                                   # (B, C, 256)
    cdf_min = torch.gather(cdf, 2, levels.amin(2, keepdim=True))           # count up to the darkest level present
    span = h * w - cdf_min
    lut = (cdf - cdf_min) / span.clamp(min=1)                              # (B, C, 256) -> [0, 1]
    out = torch.gather(lut, 2, levels).view_as(x).to(x.dtype)
    return torch.where((span > 0).view(b, c, 1, 1), out, x)


def posterize(x: Tensor, v: Tensor) -> Tensor:
    """Posterize B: each 8-bit grey level keeps its `B` most significant bits (B in 1..8; 8 keeps every level)."""
    check_batch(x, v)
    bits = per_image(v.round().long())
    if bits.min() < 1 or bits.max() > 8:
        raise ValueError(f"posterize: expected bits in 1..8, got {v.tolist()}")
    mask = LEVELS - ((1 << (8 - bits)) - 1)                                # 256 - 2^(8 - B): the kept bits
    return (quantise(x) & mask).to(x.dtype) / LEVELS


def solarize(x: Tensor, v: Tensor) -> Tensor:
    """Solarize T: every pixel at or above the threshold T is inverted (1 - x), as PIL's `solarize`."""
    return torch.where(check_batch(x, v) >= per_image(v), 1.0 - x, x)


SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0   # PIL's ImageFilter.SMOOTH


def sharpness(x: Tensor, v: Tensor) -> Tensor:
    """Sharpness S: a blend with the image smoothed by PIL's 3x3 SMOOTH kernel (border pixels kept, as PIL
    does); S = 0 is that blurred image, S = 1 the original."""
    c = check_batch(x, v).shape[1]
    kernel = SMOOTH.to(x).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)                # (B, C, H-2, W-2): the interior
    return blend(smooth, x, v)


def affine(x: Tensor, matrix: Tensor) -> Tensor:
    """Resample `x` at `matrix @ (u, 1)` for every output pixel u, in coordinates normalised to [-1, 1] about
    the centre (`matrix` (B, 2, 3) maps output to input positions); bilinear, 0 outside the image."""
    grid = F.affine_grid(matrix.to(x), list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0.0, 1.0)


def _matrix(a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor, f: Tensor) -> Tensor:
    """(B,) entries -> affine matrices (B, 2, 3) [[a, b, c], [d, e, f]]."""
    return torch.stack([torch.stack([a, b, c], 1), torch.stack([d, e, f], 1)], 1)


def rotate(x: Tensor, v: Tensor) -> Tensor:
    """Rotate theta: rotates the image by theta degrees (counter-clockwise) about its centre."""
    check_batch(x, v)
    theta = v * (math.pi / 180.0)
    cos, sin, zero = theta.cos(), theta.sin(), torch.zeros_like(theta)
    h, w = x.shape[-2:]
    # rows grow downwards, so the output pixel at angle phi (seen on screen) shows the input at phi - theta;
    # normalised coordinates are scaled per axis
    return affine(x, _matrix(cos, -sin * h / w, zero, sin * w / h, cos, zero))


def shear_x(x: Tensor, v: Tensor) -> Tensor:
    """Shear_x R: shears the image along the horizontal axis with rate R (x_in = x + R y, about the centre)."""
    check_batch(x, v)
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    h, w = x.shape[-2:]
    return affine(x, _matrix(one, v * h / w, zero, zero, one, zero))


def shear_y(x: Tensor, v: Tensor) -> Tensor:
    """Shear_y R: shears the image along the vertical axis with rate R (y_in = y + R x, about the centre)."""
    check_batch(x, v)
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    h, w = x.shape[-2:]
    return affine(x, _matrix(one, zero, zero, v * w / h, one, zero))


def translate_x(x: Tensor, v: Tensor) -> Tensor:
    """Translate_x lambda: translates the image horizontally by lambda x (image width) pixels."""
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return affine(check_batch(x, v), _matrix(one, zero, -2.0 * v, zero, one, zero))   # the width is 2 normalised


def translate_y(x: Tensor, v: Tensor) -> Tensor:
    """Translate_y lambda: translates the image vertically by lambda x (image height) pixels."""
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return affine(check_batch(x, v), _matrix(one, zero, zero, zero, one, -2.0 * v))


# name -> (op, lowest magnitude, highest magnitude): Table 12's RandAugment ops and ranges
RANDAUGMENT_OPS = {
    "AutoContrast": (auto_contrast, 0.0, 0.0),
    "Brightness": (brightness, 0.05, 0.95),
    "Color": (color, 0.05, 0.95),
    "Contrast": (contrast, 0.05, 0.95),
    "Equalize": (equalize, 0.0, 0.0),
    "Identity": (identity, 0.0, 0.0),
    "Posterize": (posterize, 4, 8),                     # bits, an integer drawn uniformly from 4..8
    "Rotate": (rotate, -30.0, 30.0),                    # degrees
    "Sharpness": (sharpness, 0.05, 0.95),
    "ShearX": (shear_x, -0.3, 0.3),
    "ShearY": (shear_y, -0.3, 0.3),
    "Solarize": (solarize, 0.0, 1.0),
    "TranslateX": (translate_x, -0.3, 0.3),             # fraction of the width
    "TranslateY": (translate_y, -0.3, 0.3),             # fraction of the height
}


def sample_magnitudes(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """`n` magnitudes of op `name` drawn uniformly from its range in Table 12 (Posterize: integers 4..8)."""
    _, low, high = RANDAUGMENT_OPS[name]
    if isinstance(low, int):
        return torch.randint(low, high + 1, (n,), generator=generator).float()
    return low + (high - low) * torch.rand(n, generator=generator)


# ----------------------------------------------------------------------------- Cutout, weak and strong


def cutout(x: Tensor, size: Tensor, generator: torch.Generator | None = None, fill: float = 0.5) -> Tensor:
    """Cutout (DeVries & Taylor 2017): a square of side round(size x H) pixels (`size` (B,), a fraction of the
    side), centred on a uniformly drawn pixel and clipped at the border, is set to `fill` (grey, as in the
    authors' code)."""
    b, _, h, w = check_batch(x, size).shape
    side = per_image((size * min(h, w)).round())                           # (B, 1, 1, 1) pixels
    cy = per_image(torch.randint(0, h, (b,), generator=generator).to(x.device))
    cx = per_image(torch.randint(0, w, (b,), generator=generator).to(x.device))
    y0, x0 = cy - torch.div(side, 2, rounding_mode="floor"), cx - torch.div(side, 2, rounding_mode="floor")
    rows, cols = torch.arange(h, device=x.device).view(1, 1, h, 1), torch.arange(w, device=x.device).view(1, 1, 1, w)
    inside = (rows >= y0) & (rows < y0 + side) & (cols >= x0) & (cols < x0 + side)   # (B, 1, H, W)
    return torch.where(inside, torch.full_like(x, fill), x)


def weak_augment(x: Tensor, generator: torch.Generator | None = None, shift: float = 0.125) -> Tensor:
    """alpha (Sec. 2.3): flip left-right with probability 1/2, then translate by a whole number of pixels drawn
    uniformly from [-shift x side, shift x side] in each direction, filling from a reflection of the image."""
    b, _, h, w = check_batch(x).shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(per_image(flip.to(x.device)), x.flip(-1), x)
    ph, pw = round(shift * h), round(shift * w)
    padded = F.pad(x, (pw, pw, ph, ph), mode="reflect")                   # (B, C, H + 2 ph, W + 2 pw)
    dy = torch.randint(0, 2 * ph + 1, (b,), generator=generator).to(x.device)   # crop offsets: a shift of dy - ph
    dx = torch.randint(0, 2 * pw + 1, (b,), generator=generator).to(x.device)
    c = x.shape[1]
    rows = (dy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    x = torch.gather(padded, 2, rows.expand(b, c, h, padded.shape[-1]))    # (B, C, H, W + 2 pw)
    cols = (dx.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    return torch.gather(x, 3, cols.expand(b, c, h, w))                     # (B, C, H, W)


def rand_augment(x: Tensor, generator: torch.Generator | None = None, n: int = 2, ops=None) -> Tensor:
    """RandAugment as FixMatch uses it (Sec. 2.3): each image gets `n` ops drawn uniformly (with replacement)
    from `ops` (default: all of Table 12), applied in order, each at a magnitude drawn uniformly from its range."""
    check_batch(x)
    names = list(RANDAUGMENT_OPS if ops is None else ops)
    for _ in range(n):
        choice = torch.randint(0, len(names), (len(x),), generator=generator)
        out = x.clone()
        for i, name in enumerate(names):
            rows = (choice == i).nonzero().flatten()
            if len(rows):
                op = RANDAUGMENT_OPS[name][0]
                out[rows] = op(x[rows], sample_magnitudes(name, len(rows), generator).to(x))
        x = out
    return x


def strong_augment(x: Tensor, generator: torch.Generator | None = None, n: int = 2,
                   cutout_size: float = 0.5) -> Tensor:
    """A (Sec. 2.3): the weak flip-and-shift, RandAugment with `n` ops at random magnitudes, then Cutout of a
    square whose side is a fraction of the image drawn uniformly from (0, `cutout_size`] (the authors' code
    applies the flip-and-shift first too)."""
    x = rand_augment(weak_augment(x, generator), generator, n=n)
    size = cutout_size * (1.0 - torch.rand(len(x), generator=generator))  # (0, cutout_size]
    return cutout(x, size.to(x), generator)
