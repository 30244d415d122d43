"""Hugging Face `transformers` ViT at the configuration of one of our presets (a reference for tests and benchmarks).

`transformers` is not a dependency of archzoo: it is imported only when these functions are called. The model is
randomly initialized from a `ViTConfig`; nothing is downloaded.
"""

from __future__ import annotations

import torch

from ...engine.bench import register_model_reference
from ...registry import create_model
from .models import VisionTransformer


def hf_vit_config(model: VisionTransformer):
    """The `transformers.ViTConfig` of the same architecture as `model` (no dropout; same LayerNorm eps)."""
    from transformers import ViTConfig

    if model.img_size[0] != model.img_size[1] or model.patch_size[0] != model.patch_size[1]:
        raise ValueError(f"transformers' ViTConfig takes square images and patches, got img_size {model.img_size} "
                         f"and patch_size {model.patch_size}")
    if model.representation_size:
        raise ValueError("transformers' ViTForImageClassification has no pre-logits layer (representation_size)")
    return ViTConfig(hidden_size=model.dim, num_hidden_layers=model.depth, num_attention_heads=model.heads,
                     intermediate_size=model.mlp_dim, hidden_act="gelu", hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, layer_norm_eps=model.layer_norm_eps,
                     image_size=model.img_size[0], patch_size=model.patch_size[0], num_channels=model.in_chans,
                     qkv_bias=model.qkv_bias, num_labels=model.num_classes)


def hf_vit(name: str = "vit_b16", **overrides):
    """`transformers.ViTForImageClassification` at the configuration of our preset `name` (random init, eval mode)."""
    from transformers import ViTForImageClassification

    with torch.device("meta"):                                   # only the configuration is read
        ours = create_model(name, **overrides)
    return ViTForImageClassification(hf_vit_config(ours)).eval()


register_model_reference("vit_*", "transformers ViTForImageClassification", hf_vit)
