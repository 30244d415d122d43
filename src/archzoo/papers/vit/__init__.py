"""ViT: An Image is Worth 16x16 Words (Dosovitskiy et al. 2020, arXiv:2010.11929).

Patch embedding, class token, learned position embedding resized by 2D bicubic interpolation for new resolutions,
a pre-norm Transformer encoder with biased-qkv attention, the presets vit_ti16 ... vit_h14, the mean attention
distance analysis (Fig. 7), and the claims: ViT trails a ResNet on little data and the gap closes as data grows;
attention distance grows with depth. See README.md beside this file.
"""

from . import claims, reference  # noqa: F401  (registers the claims and the benchmark reference)
from .attention import ViTAttention, mean_attention_distance, patch_distances
from .models import VisionTransformer, vit_b16, vit_b32, vit_h14, vit_l16, vit_l32, vit_s16, vit_s32, vit_ti16
from .position import resize_pos_embed

__all__ = ["ViTAttention", "VisionTransformer", "mean_attention_distance", "patch_distances", "resize_pos_embed",
           "vit_b16", "vit_b32", "vit_h14", "vit_l16", "vit_l32", "vit_s16", "vit_s32", "vit_ti16"]
