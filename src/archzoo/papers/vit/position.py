"""Position embeddings at a new resolution (Dosovitskiy et al. 2020, arXiv:2010.11929, Sec. 3.2).

Fine-tuning at a higher resolution keeps the patch size, so the sequence gets longer and "the pre-trained position
embeddings may no longer be meaningful. We therefore perform 2D interpolation of the pre-trained position
embeddings, according to their location in the original image." The embeddings of the patch tokens are laid out
on their (h, w) grid, resized bicubically to the new grid and flattened back in row-major order; the class
token's embedding has no location and is kept as it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ...core.checks import check_shape
from ...registry import register_layer


def _grid(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


@register_layer(paper="vit")
def resize_pos_embed(pos_embed: Tensor, new_grid: int | tuple[int, int], old_grid: int | tuple[int, int] | None = None,
                     num_prefix_tokens: int = 1, mode: str = "bicubic") -> Tensor:
    """Resize a position embedding (num_prefix_tokens + h w, D) to (num_prefix_tokens + h' w', D) (Sec. 3.2).

    `old_grid` defaults to the square grid that the length implies. Interpolation is `F.interpolate` with
    `align_corners=False` (pixel centres of the old and new grids cover the same image), bicubic by default.
    """
    length = check_shape(pos_embed, "N D", name="pos_embed")["N"] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(max(length, 0))
        if side * side != length:
            raise ValueError(f"pos_embed: {length} patch positions are not a square grid; pass old_grid=(h, w)")
        old_grid = (side, side)
    old_grid, new_grid = _grid(old_grid), _grid(new_grid)
    if old_grid[0] * old_grid[1] != length:
        raise ValueError(f"pos_embed: expected {num_prefix_tokens} + {old_grid[0]} * {old_grid[1]} positions for grid "
                         f"{old_grid}, got shape {tuple(pos_embed.shape)}")
    if old_grid == new_grid:
        return pos_embed
    prefix, patches = pos_embed[:num_prefix_tokens], pos_embed[num_prefix_tokens:]
    patches = rearrange(patches, "(h w) d -> 1 d h w", h=old_grid[0], w=old_grid[1])        # (1, D, h, w)
    patches = F.interpolate(patches, size=new_grid, mode=mode, align_corners=False)        # (1, D, h', w')
    return torch.cat((prefix, rearrange(patches, "1 d h w -> (h w) d")))                   # (prefix + h' w', D)
