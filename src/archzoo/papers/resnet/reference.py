"""Hugging Face `transformers` ResNet at the configuration of one of our ImageNet presets (a reference for tests and
benchmarks: `archzoo bench models --family cnn` times it beside resnet18 ... resnet152).

`transformers` is not a dependency of archzoo: it is imported only when these functions are called. The model is
randomly initialized from a `ResNetConfig`; nothing is downloaded. It is the same network as ours with option B
shortcuts: a 7x7/2 convolution, BN, ReLU and a 3x3/2 max-pool, four stages whose first unit projects its shortcut
with a 1x1 convolution and BN, the stride on the 3x3 convolution of a bottleneck ("v1.5", ours by default) or on its
first 1x1 (`stride_in_1x1=True`, transformers' `downsample_in_bottleneck`).
"""

from __future__ import annotations

from torch import nn

from ...engine.bench import preset_on_meta, register_model_reference


def hf_resnet_config(model: nn.Module):
    """The `transformers.ResNetConfig` of the same architecture as our ImageNet `ResNet` `model`."""
    from transformers import ResNetConfig

    stages = [list(stage) for stage in model.stages]
    for block in (b for stage in stages for b in stage):
        if block.shortcut is None or not isinstance(block.shortcut, nn.Identity) and not any(
                isinstance(m, nn.Conv2d) for m in block.shortcut.modules()):
            raise ValueError("transformers' ResNet has projection shortcuts (option B) only, and no plain net")
    bottleneck = hasattr(stages[0][0], "conv3")
    last_conv = [(s[0].conv3 if bottleneck else s[0].conv2) for s in stages]
    return ResNetConfig(num_channels=model.in_chans, embedding_size=model.stem[0].out_channels,
                        hidden_sizes=[conv.out_channels for conv in last_conv], depths=[len(s) for s in stages],
                        layer_type="bottleneck" if bottleneck else "basic", hidden_act="relu",
                        downsample_in_first_stage=False,
                        downsample_in_bottleneck=bottleneck and stages[1][0].conv1.stride != (1, 1),
                        num_labels=model.num_classes)


def hf_resnet(name: str = "resnet50", **overrides):
    """`transformers.ResNetForImageClassification` at the configuration of our preset `name` (random init, eval)."""
    from transformers import ResNetForImageClassification

    ours = preset_on_meta(name, **overrides)                    # only the configuration is read
    return ResNetForImageClassification(hf_resnet_config(ours)).eval()


for _name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
    register_model_reference(_name, "transformers ResNetForImageClassification", hf_resnet)
