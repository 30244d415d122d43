"""Big Transfer (BiT): General Visual Representation Learning (Kolesnikov, Beyer, Zhai, Puigcerver, Yung, Gelly,
Houlsby 2019, arXiv:1912.11370). BiT's ResNet-v2 with GroupNorm + Weight Standardization as released
(`StdConv2d`, `PreActBottleneck`, `ResNetV2`), the presets bit_r50x1 ... bit_r152x4, the BiT-HyperRule (`hyperrule`,
`fine_tune`), the few-shot transfer claim and Hugging Face's BiT as a reference (`reference.py`). See README.md
beside this file."""

from . import bench, claims, reference, resnet_v2, transfer  # noqa: F401  (registers layers, presets, claim, benches)
from .resnet_v2 import (
    PreActBottleneck,
    ResNetV2,
    bit_r50x1,
    bit_r50x3,
    bit_r101x1,
    bit_r101x3,
    bit_r152x2,
    bit_r152x4,
)
from .std_conv import StdConv2d
from .transfer import (
    HyperRule,
    fine_tune,
    hyperrule,
    mixup_cross_entropy,
    preprocess_test,
    preprocess_train,
    resize_crop_flip,
)

__all__ = ["HyperRule", "PreActBottleneck", "ResNetV2", "StdConv2d", "bit_r50x1", "bit_r50x3", "bit_r101x1",
           "bit_r101x3", "bit_r152x2", "bit_r152x4", "fine_tune", "hyperrule", "mixup_cross_entropy", "preprocess_test",
           "preprocess_train", "resize_crop_flip"]
