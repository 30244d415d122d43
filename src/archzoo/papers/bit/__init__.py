"""Big Transfer (BiT): General Visual Representation Learning (Kolesnikov, Beyer, Zhai, Puigcerver, Yung, Gelly,
Houlsby 2019, arXiv:1912.11370). BiT's ResNet-v2 with GroupNorm + Weight Standardization (`PreActBottleneck`,
`ResNetV2`), the presets bit_r50x1 ... bit_r152x4, the BiT-HyperRule (`hyperrule`, `fine_tune`) and the few-shot
transfer claim. See README.md beside this file."""

from . import claims, resnet_v2, transfer  # noqa: F401  (registers the layer, the presets and the claim)
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
from .transfer import (
    HyperRule,
    fine_tune,
    hyperrule,
    mixup_cross_entropy,
    preprocess_test,
    preprocess_train,
    resize_crop_flip,
)

__all__ = ["HyperRule", "PreActBottleneck", "ResNetV2", "bit_r50x1", "bit_r50x3", "bit_r101x1", "bit_r101x3",
           "bit_r152x2", "bit_r152x4", "fine_tune", "hyperrule", "mixup_cross_entropy", "preprocess_test",
           "preprocess_train", "resize_crop_flip"]
