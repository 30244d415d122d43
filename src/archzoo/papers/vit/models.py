r"""The Vision Transformer (Dosovitskiy et al. 2020, arXiv:2010.11929, Sec. 3.1, Eq. 1-4) and its presets.

An image is cut into P x P patches, each flattened and projected linearly (E); a learnable class token is
prepended and a learned position embedding added; a standard pre-norm Transformer encoder follows, and the class
token's final state, layer-normalized, is the image representation:

    z_0 = [x_class; x_p^1 E; x_p^2 E; ...; x_p^N E] + E_pos,   E in R^{(P^2 C) x D}, E_pos in R^{(N+1) x D}   (Eq. 1)
    z'_l = MSA(LN(z_{l-1})) + z_{l-1},        l = 1 ... L                                                   (Eq. 2)
    z_l = MLP(LN(z'_l)) + z'_l,               l = 1 ... L                                                   (Eq. 3)
    y = LN(z_L^0)                                                                                           (Eq. 4)

Presets (`archzoo.create_model("vit_b16", num_classes=10, img_size=32)`), Table 1 of the paper and Ti/S from DeiT
(Touvron et al. 2020, arXiv:2012.12877, Table 1), parameter counts with 1000 classes at 224 x 224:

    vit_ti16   D=192,  L=12, heads=3,  P=16    5,717,416
    vit_s16    D=384,  L=12, heads=6,  P=16   22,050,664
    vit_s32    D=384,  L=12, heads=6,  P=32   22,878,952
    vit_b16    D=768,  L=12, heads=12, P=16   86,567,656
    vit_b32    D=768,  L=12, heads=12, P=32   88,224,232
    vit_l16    D=1024, L=24, heads=16, P=16  304,326,632
    vit_l32    D=1024, L=24, heads=16, P=32  306,535,400
    vit_h14    D=1280, L=32, heads=16, P=14  632,045,800

The MLP is 4 D wide in every preset (Table 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier, init_head
from ...core.embeddings import LearnedPositionalEmbedding, PatchEmbed
from ...core.transformer import Transformer
from ...registry import IMAGENET_CFG, INCEPTION_MEAN, INCEPTION_STD, register_model
from .attention import ViTAttention
from .position import resize_pos_embed


def _resize_pos_embed_on_load(module: VisionTransformer, state_dict: dict, prefix: str, *args) -> None:
    """Load-state-dict pre-hook: a position embedding of another grid is resized to this model's (Sec. 3.2)."""
    key = prefix + "pos_embed.weight"
    if key in state_dict and state_dict[key].shape != module.pos_embed.weight.shape:
        state_dict[key] = resize_pos_embed(state_dict[key], module.patch_embed.grid_size)


class VisionTransformer(Classifier, nn.Module):
    r"""ViT (Sec. 3.1, Eq. 1-4): patch embedding, class token, learned position embedding, pre-norm encoder, head.

    - `img_size` fixes the patch grid and the length of E_pos. Weights of another resolution load into it: the
      state dict's position embedding is resized by 2D bicubic interpolation (Sec. 3.2, `resize_pos_embed`), so
      `create_model("vit_b16", img_size=384).load_state_dict(sd_at_224)` is the paper's fine-tuning at higher
      resolution. The input must have exactly `img_size`.
    - The encoder is `core.Transformer` with pre-norm blocks (Eq. 2-3), the biased-qkv `ViTAttention` and a
      GELU MLP of `mlp_ratio * dim` (Appendix A), ending with the LayerNorm of Eq. 4. LayerNorm eps is 1e-6 as in
      the paper's released models.
    - Head: `representation_size` adds the pre-training head's hidden layer (Linear + tanh, "an MLP with one hidden
      layer at pre-training time", Sec. 3.1); by default the head is the single linear layer of fine-tuning.
    - Initialization as in the released models: Xavier-uniform linear layers with zero biases, LeCun-normal patch
      projection, E_pos ~ N(0, 0.02^2), zero class token, and a zero-initialized classifier (Sec. 3.2).

    `forward_features(x)` returns the normalized tokens (B, 1 + N, D), class token first; `forward_head` takes
    y = LN(z_L^0) to logits (`core.Classifier`); `attention_maps(x)` returns every layer's attention weights.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int | tuple[int, int] = 16,
                 in_chans: int = 3, num_classes: int = 1000, dim: int = 768, depth: int = 12, heads: int = 12,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, attn_dropout: float = 0.0,
                 representation_size: int | None = None, qkv_bias: bool = True, layer_norm_eps: float = 1e-6):
        super().__init__()
        if num_classes < 0 or in_chans < 1:
            raise ValueError(f"num_classes must be >= 0 and in_chans >= 1, got {num_classes} and {in_chans}")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.num_classes, self.in_chans, self.dim, self.depth, self.heads = num_classes, in_chans, dim, depth, heads
        self.mlp_dim, self.qkv_bias, self.layer_norm_eps = int(dim * mlp_ratio), qkv_bias, layer_norm_eps
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, dim)               # E, as a P x P/P conv
        self.img_size, self.patch_size = self.patch_embed.img_size, self.patch_embed.patch_size
        self.default_input_size = (in_chans, *self.img_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))                           # x_class
        self.pos_embed = LearnedPositionalEmbedding(1 + self.patch_embed.num_patches, dim)   # E_pos
        self.pos_drop = nn.Dropout(dropout)
        self.encoder = Transformer(dim, depth, heads, dim // heads, mlp_ratio, attention=ViTAttention,
                                   attention_kwargs=dict(qkv_bias=qkv_bias), norm="pre", dropout=dropout,
                                   attn_dropout=attn_dropout, norm_eps=layer_norm_eps)
        self.representation_size = representation_size
        self.num_features = representation_size or dim
        self.pre_logits = nn.Sequential(nn.Linear(dim, representation_size), nn.Tanh()) if representation_size \
            else nn.Identity()
        self._init_weights()
        self.head = self.new_head(num_classes)
        self.register_load_state_dict_pre_hook(_resize_pos_embed_on_load)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight                                                # (D, C, P, P)
        nn.init.normal_(w, std=1 / math.sqrt(w[0].numel()))                            # LeCun normal, fan-in P^2 C
        nn.init.zeros_(self.patch_embed.proj.bias)

    def new_head(self, num_classes: int) -> nn.Module:
        """A zero-initialized classifier with `num_classes` outputs (Sec. 3.2; 0: none, forward returns y)."""
        return init_head(super().new_head(num_classes))

    def embed(self, x: Tensor) -> Tensor:                                               # (B, C, H, W)
        """z_0 of Eq. 1: (B, C, H, W) -> (B, 1 + N, D)."""
        x = check_image(x, self, C=self.in_chans, H=self.img_size[0], W=self.img_size[1])
        patches = self.patch_embed(x)                                                  # (B, N, D): x_p^i E
        cls = self.cls_token.expand(x.shape[0], -1, -1)                                # (B, 1, D)
        return self.pos_drop(self.pos_embed(torch.cat((cls, patches), dim=1)))         # (B, 1 + N, D)

    def forward_features(self, x: Tensor) -> Tensor:                                    # (B, C, H, W)
        return self.encoder(self.embed(x))                                             # (B, 1 + N, D), Eq. 2-4

    def forward_head(self, z: Tensor, pre_logits: bool = False) -> Tensor:               # (B, 1 + N, D)
        y = self.pre_logits(z[:, 0])                                                   # y = LN(z_L^0), Eq. 4
        return y if pre_logits else self.head(y)                                       # (B, num_classes)

    def attention_maps(self, x: Tensor) -> list[Tensor]:
        """The attention weights A (Eq. 6) of every layer for images `x`: a list of `depth` tensors (B, H, 1+N, 1+N)."""
        inputs = []
        hooks = [block.attn.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
                 for block in self.encoder.blocks]                                     # each layer's LN(z_{l-1})
        try:
            self.forward_features(x)
        finally:
            for h in hooks:
                h.remove()
        return [block.attn.attention_weights(h) for block, h in zip(self.encoder.blocks, inputs)]


def _vit(kwargs: dict, **config) -> VisionTransformer:
    return VisionTransformer(**{**config, **kwargs})


def vit_cfg(patch_size: int, deit: bool = False) -> dict:
    """pretrained_cfg: the paper's models take RGB scaled to [-1, 1] (mean = std = 0.5 for inputs in [0, 1]), DeiT's
    (Ti/16, S/16 and our S/32) ImageNet's normalisation. The position embedding fixes the input size, whose side
    must be a multiple of the patch size: one patch is the smallest image."""
    norm = {} if deit else dict(mean=INCEPTION_MEAN, std=INCEPTION_STD)
    return dict(IMAGENET_CFG, **norm, fixed_input_size=True, min_input_size=(3, patch_size, patch_size))


@register_model(paper="vit", **vit_cfg(16, deit=True))
def vit_ti16(**kwargs) -> VisionTransformer:
    """ViT-Ti/16 (DeiT-Ti, Touvron et al. 2020, Table 1): D=192, 12 layers, 3 heads; 5,717,416 parameters."""
    return _vit(kwargs, patch_size=16, dim=192, depth=12, heads=3)


@register_model(paper="vit", **vit_cfg(16, deit=True))
def vit_s16(**kwargs) -> VisionTransformer:
    """ViT-S/16 (DeiT-S, Touvron et al. 2020, Table 1): D=384, 12 layers, 6 heads; 22,050,664 parameters."""
    return _vit(kwargs, patch_size=16, dim=384, depth=12, heads=6)


@register_model(paper="vit", **vit_cfg(32, deit=True))
def vit_s32(**kwargs) -> VisionTransformer:
    """ViT-S/32: the DeiT-S encoder on 32 x 32 patches; 22,878,952 parameters."""
    return _vit(kwargs, patch_size=32, dim=384, depth=12, heads=6)


@register_model(paper="vit", **vit_cfg(16))
def vit_b16(**kwargs) -> VisionTransformer:
    """ViT-B/16 (Table 1, "Base"): D=768, 12 layers, 12 heads, MLP 3072; 86,567,656 parameters (paper: 86M)."""
    return _vit(kwargs, patch_size=16, dim=768, depth=12, heads=12)


@register_model(paper="vit", **vit_cfg(32))
def vit_b32(**kwargs) -> VisionTransformer:
    """ViT-B/32 (Table 1, "Base", 32 x 32 patches): 88,224,232 parameters."""
    return _vit(kwargs, patch_size=32, dim=768, depth=12, heads=12)


@register_model(paper="vit", **vit_cfg(16))
def vit_l16(**kwargs) -> VisionTransformer:
    """ViT-L/16 (Table 1, "Large"): D=1024, 24 layers, 16 heads, MLP 4096; 304,326,632 parameters (paper: 307M)."""
    return _vit(kwargs, patch_size=16, dim=1024, depth=24, heads=16)


@register_model(paper="vit", **vit_cfg(32))
def vit_l32(**kwargs) -> VisionTransformer:
    """ViT-L/32 (Table 1, "Large", 32 x 32 patches): 306,535,400 parameters."""
    return _vit(kwargs, patch_size=32, dim=1024, depth=24, heads=16)


@register_model(paper="vit", **vit_cfg(14))
def vit_h14(**kwargs) -> VisionTransformer:
    """ViT-H/14 (Table 1, "Huge"): D=1280, 32 layers, 16 heads, MLP 5120; 632,045,800 parameters (paper: 632M)."""
    return _vit(kwargs, patch_size=14, dim=1280, depth=32, heads=16)
