r"""The Perceiver (Jaegle et al. 2021, arXiv:2103.03206, Sec. 2-3, Fig. 1) and its ImageNet preset.

A small learned latent array z (N x D) reads a large byte array x (M x C) through cross-attention, whose queries
come from the latents and keys and values from the inputs, so it costs O(M N) instead of O(M^2); a Transformer
tower of self-attention blocks then processes the latents at O(N^2) independently of M. The pair
(cross-attend, latent tower) is repeated, the latents re-reading the input each time (Fig. 1):

    z_1 = z_0 + CrossAttn(LN(z_0), LN(x)),     z_1 <- z_1 + MLP(LN(z_1))       (cross-attend, Sec. 2.1)
    z   <- LatentTransformer(z)                                                 (latent tower, Sec. 2.2)
    ... repeated; logits = W mean_n(z_n) + b                                   (Sec. 4.1)

Weight sharing (Sec. 2.2): the latent towers of all repeats share their weights, and so do all cross-attends but
the first, which makes the model an RNN unrolled in depth with 2 cross-attends and 1 tower of parameters however
many repeats it runs. Nothing in it knows where an input element sits: position comes only from the Fourier
features concatenated to each element (`fourier.py`), so without them the model is permutation invariant.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...core.attention import FullAttention
from ...core.checks import as_model_dtype, check_shape
from ...core.classifier import Classifier
from ...core.mlp import FeedForward
from ...core.transformer import Transformer
from ...registry import IMAGENET_CFG, register_layer, register_model
from .fourier import FourierPositionEncoding


@register_layer(paper="perceiver")
class CrossAttend(nn.Module):
    r"""One cross-attend (Sec. 2.1, Fig. 1): the latents (N, D) query the byte array (M, C).

        z' = z + Attn(Q = LN(z) W^Q, K = LN(x) W^K, V = LN(x) W^V) W^O,    z'' = z' + MLP(LN(z'))

    LayerNorm on both the latents and the inputs; Q, K, V are projected to `heads * dim_head` channels (the
    paper: 1 head with as many channels as the latent). The attention matrix is N x M: linear in M.
    """

    def __init__(self, latent_dim: int, input_dim: int, heads: int = 1, dim_head: int | None = None,
                 mlp_ratio: float = 1.0, dropout: float = 0.0):
        super().__init__()
        self.latent_dim, self.input_dim = latent_dim, input_dim
        self.norm_latents = nn.LayerNorm(latent_dim)
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.attn = FullAttention(latent_dim, heads, dim_head or latent_dim // heads, dropout, context_dim=input_dim)
        self.norm_mlp = nn.LayerNorm(latent_dim)
        self.mlp = FeedForward(latent_dim, mlp_ratio, dropout=dropout)

    def forward(self, latents: Tensor, inputs: Tensor, mask: Tensor | None = None) -> Tensor:   # (B, N, D), (B, M, C)
        b = check_shape(latents, "B N D", name="latents", D=self.latent_dim)["B"]
        check_shape(inputs, "B M C", name="inputs", B=b, C=self.input_dim)
        z = latents + self.attn(self.norm_latents(latents), context=self.norm_inputs(inputs), mask=mask)
        return z + self.mlp(self.norm_mlp(z))                                                      # (B, N, D)


class Perceiver(Classifier, nn.Module):
    r"""The Perceiver classifier (Sec. 2-4): Fourier position features, latent array, repeated (cross-attend,
    latent tower), average of the latents, linear head.

    - Input: with `input_axis = d >= 1`, a tensor (B, C, *S) on a d-dimensional grid (d = 1 audio, 2 images, 3
      video), flattened to M = prod(S) elements to which `FourierPositionEncoding` concatenates d (2K + 1)
      position channels. With `input_axis = 0` the input is already a byte array (B, M, C) whose positions, if any,
      are in its channels (point clouds: `fourier_features` of the coordinates).
    - `repeats` cross-attends, each followed by a tower of `self_per_cross_attn` pre-norm self-attention blocks
      (`core.Transformer`). `share_weights=True` (the paper) keeps 2 cross-attends (the first, and one for all the
      others) and 1 tower; False gives every repeat its own.
    - The latent array is initialized from a truncated normal (std 0.02, cut at +-2). The averaged latent goes
      through a LayerNorm (the tower's residual stream is pre-norm, hence unnormalized) and the linear head.

    `forward_features(x)` returns the final latents (B, N, D), `forward_array(byte_array)` does the same from a
    byte array, `forward_head(z)` averages and classifies (`core.Classifier`). Inputs follow the dtype rule of
    `core.checks.as_model_dtype`.
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 1000, input_axis: int = 2,
                 input_size: tuple[int, ...] = (224, 224), num_bands: int = 64, max_freq: float = 224.0,
                 num_latents: int = 512, latent_dim: int = 1024, repeats: int = 8, self_per_cross_attn: int = 6,
                 cross_heads: int = 1, cross_dim_head: int | None = None, latent_heads: int = 8,
                 latent_dim_head: int | None = None, mlp_ratio: float = 1.0, share_weights: bool = True,
                 dropout: float = 0.0, freq_spacing: str = "linear"):
        super().__init__()
        if num_classes < 0 or in_chans < 1 or repeats < 1 or self_per_cross_attn < 0:
            raise ValueError(f"need num_classes >= 0, in_chans >= 1, repeats >= 1 and self_per_cross_attn >= 0, got "
                             f"{num_classes}, {in_chans}, {repeats} and {self_per_cross_attn}")
        if latent_dim % latent_heads:
            raise ValueError(f"latent_dim ({latent_dim}) must be divisible by latent_heads ({latent_heads})")
        if input_axis and len(input_size) != input_axis:
            raise ValueError(f"input_size {tuple(input_size)} must have input_axis = {input_axis} entries")
        self.in_chans, self.num_classes, self.input_axis = in_chans, num_classes, input_axis
        self.num_latents, self.latent_dim, self.repeats, self.share_weights = num_latents, latent_dim, repeats, \
            share_weights
        self.default_input_size = (in_chans, *input_size) if input_axis else (tuple(input_size)[0], in_chans)
        self.position = FourierPositionEncoding(input_axis, num_bands, max_freq, freq_spacing) if input_axis else None
        self.input_dim = in_chans + (self.position.num_features if self.position else 0)          # C of the byte array
        self.latents = nn.Parameter(torch.empty(num_latents, latent_dim))                          # z_0, (N, D)
        nn.init.trunc_normal_(self.latents, std=0.02, a=-2.0, b=2.0)
        n_cross, n_tower = (min(2, repeats), 1) if share_weights else (repeats, repeats)
        self.cross_attends = nn.ModuleList(
            CrossAttend(latent_dim, self.input_dim, cross_heads, cross_dim_head, mlp_ratio, dropout)
            for _ in range(n_cross))
        self.towers = nn.ModuleList(
            Transformer(latent_dim, self_per_cross_attn, latent_heads, latent_dim_head or latent_dim // latent_heads,
                        mlp_ratio, dropout=dropout, final_norm=False) for _ in range(n_tower))
        self.num_features = latent_dim
        self.norm = nn.LayerNorm(latent_dim)
        self.head = self.new_head(num_classes)

    def layer(self, i: int) -> tuple[CrossAttend, Transformer]:
        """The (cross-attend, latent tower) of repeat i: with sharing, repeats 2.. reuse the same modules."""
        return self.cross_attends[min(i, len(self.cross_attends) - 1)], self.towers[min(i, len(self.towers) - 1)]

    def byte_array(self, x: Tensor) -> Tensor:
        """The input as a byte array (B, M, C + position channels)."""
        if self.position is None:
            check_shape(x, "B M C", C=self.in_chans)
            return as_model_dtype(x, self)
        check_shape(x, "B C " + " ".join(f"S{i}" for i in range(self.input_axis)), C=self.in_chans)
        return self.position(as_model_dtype(x, self))

    def forward_array(self, byte_array: Tensor, mask: Tensor | None = None) -> Tensor:   # (B, M, C)
        """The final latents (B, N, D) from a byte array; `mask` (B, M) bool, True = real element."""
        check_shape(byte_array, "B M C", name="byte array", C=self.input_dim)
        z = self.latents.expand(byte_array.shape[0], -1, -1)                          # (B, N, D)
        for i in range(self.repeats):
            cross_attend, tower = self.layer(i)
            z = tower(cross_attend(z, byte_array, mask=mask))                          # (B, N, D)
        return z

    def forward_features(self, x: Tensor) -> Tensor:
        return self.forward_array(self.byte_array(x))                                  # (B, N, D)

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:              # (B, N, D)
        y = self.norm(z.mean(dim=1))                                                   # average over the latents
        return y if pre_logits else self.head(y)                                       # (B, num_classes)



@register_model(paper="perceiver", **IMAGENET_CFG)
def perceiver_imagenet(img_size: int | None = None, **kwargs) -> Perceiver:
    """The ImageNet Perceiver (Sec. 4.1, App. A): 512 latents x 1024 channels, 8 cross-attends (1 head, weights
    shared after the first), a shared 6-block latent tower (8 heads), 64 bands up to mu = 224, MLP widening 1;
    224 x 224 RGB input (261 byte-array channels). 48,816,124 parameters here (paper: 44.9M; see README).
    `img_size=s` is short for `input_size=(s, s)`; any image size runs, the position features follow it."""
    if img_size is not None:
        kwargs["input_size"] = (img_size, img_size)
    return Perceiver(**kwargs)
