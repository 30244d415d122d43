"""Hugging Face `transformers` BiT at the configuration of one of our presets (a reference for tests and benchmarks).

`transformers` is not a dependency of archzoo: it is imported only when these functions are called. The model is
randomly initialized from a `BitConfig` (pre-activation units, symmetric zero padding as ours); nothing is
downloaded. Its convolutions standardize as the BiT release does, with epsilon 1e-8 (ours: the release's 1e-10).
"""

from __future__ import annotations

from ...engine.bench import preset_on_meta, register_model_reference
from .resnet_v2 import PreActBottleneck, ResNetV2


def hf_bit_config(model: ResNetV2):
    """The `transformers.BitConfig` of the same architecture as `model` (no stochastic depth, no dynamic padding)."""
    from transformers import BitConfig
    from transformers.models.bit.modeling_bit import make_div

    units = [[m for m in stage.modules() if isinstance(m, PreActBottleneck)] for stage in model.stages]
    widths = [stage[0].conv3.out_channels for stage in units]
    if any(make_div(w // PreActBottleneck.expansion) != w // PreActBottleneck.expansion for w in widths):
        raise ValueError(f"transformers' BiT rounds a unit's middle width to a multiple of 8; ours are "
                         f"{[w // PreActBottleneck.expansion for w in widths]}")
    return BitConfig(num_channels=model.in_chans, embedding_size=units[0][0].conv1.in_channels,
                     hidden_sizes=widths, depths=[len(stage) for stage in units], layer_type="preactivation",
                     hidden_act="relu", global_padding=None, num_groups=model.norm.num_groups,
                     embedding_dynamic_padding=False, width_factor=1, num_labels=model.num_classes)


def hf_bit(name: str = "bit_r50x1", **overrides):
    """`transformers.BitForImageClassification` at the configuration of our preset `name` (random init, eval mode)."""
    from transformers import BitForImageClassification

    ours = preset_on_meta(name, **overrides)                    # only the configuration is read
    return BitForImageClassification(hf_bit_config(ours)).eval()


register_model_reference("bit_r*", "transformers BitForImageClassification", hf_bit)
