"""Single images for single-image papers: the sample photographs that ship with scikit-image."""

from __future__ import annotations

import torch

# The images bundled in scikit-image's own distribution (no download); see `skimage.data`.
IMAGE_NAMES = ("astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins", "colorwheel",
               "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon",
               "page", "retina", "rocket", "shepp_logan_phantom", "text")


def list_images() -> list[str]:
    """Names accepted by `load_image`."""
    return list(IMAGE_NAMES)


def load_image(name: str = "camera", size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """A scikit-image sample image as a float32 tensor (C, H, W) in [0, 1]: C = 1 for grey, 3 for colour.

    `size` (an int for a square, or (H, W)) resizes it with anti-aliasing.
    """
    import skimage.data
    from skimage.transform import resize
    from skimage.util import img_as_float32

    if name not in IMAGE_NAMES:
        raise ValueError(f"unknown image {name!r}; available: {', '.join(IMAGE_NAMES)}")
    im = img_as_float32(getattr(skimage.data, name)())                   # (H, W) or (H, W, 3)
    if size is not None:
        im = resize(im, (size, size) if isinstance(size, int) else tuple(size), anti_aliasing=True).clip(0, 1)
    im = im[..., None] if im.ndim == 2 else im
    return torch.from_numpy(im.astype("float32").transpose(2, 0, 1).copy())
