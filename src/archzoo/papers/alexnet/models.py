"""AlexNet: five convolutional and three fully connected layers (Krizhevsky, Sutskever & Hinton 2012, Sec. 3, Fig. 2).

Presets, timm style (`archzoo.create_model("alexnet", num_classes=10)`):

- `alexnet`: the ImageNet net of Sec. 3.5 on 227x227x3 inputs, 1000 classes, 60,965,224 parameters.
- `alexnet_small`: the same structure (LRN, overlapping pooling, grouped convolutions, dropout) scaled to 28x28
  (Fashion-MNIST) or 32x32 inputs: 5x5 stride-1 first convolution, a quarter of the kernels, 512 hidden units.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier, init_head
from ...registry import IMAGENET_MEAN, register_model
from .response_normalization import LocalResponseNorm

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """The output length of a convolution or pooling window sliding over `size` pixels."""
    return (size + 2 * padding - kernel) // stride + 1


def overlapping_max_pool() -> nn.MaxPool2d:
    """Overlapping max pooling (Sec. 3.4): windows of z x z = 3 x 3 pixels spaced s = 2 apart, s < z.

    Neighbouring windows share a row or column of pixels; the paper reports top-1/top-5 error 0.4%/0.3% lower
    than the non-overlapping s = z = 2, which gives outputs of the same size.
    """
    return nn.MaxPool2d(kernel_size=3, stride=2)


class AlexNet(Classifier, nn.Module):
    """The network of Sec. 3.5 and Fig. 2.

    conv1 (96 kernels 11x11, stride 4) -> ReLU -> LRN -> max pool 3/2
    conv2 (256 kernels 5x5, pad 2, groups 2) -> ReLU -> LRN -> max pool 3/2
    conv3 (384 kernels 3x3, pad 1, all of conv2's maps) -> ReLU
    conv4 (384 kernels 3x3, pad 1, groups 2) -> ReLU
    conv5 (256 kernels 3x3, pad 1, groups 2) -> ReLU -> max pool 3/2
    fc6 (4096) -> ReLU -> dropout 0.5 -> fc7 (4096) -> ReLU -> dropout 0.5 -> fc8 (num_classes)

    The two-GPU connectivity of Sec. 3.2 is `groups=2`: half of the kernels of conv2, conv4 and conv5 live on
    each GPU and see only the maps of their own GPU's previous layer, while conv3 and the fully connected layers
    communicate across GPUs and see everything. conv1 sees the whole image on both GPUs, so it is an ordinary
    convolution. `groups=1` gives the single-GPU net with the same kernel counts. LRN (Sec. 3.3) follows the
    ReLUs of conv1 and conv2; max pooling follows both LRNs and conv5 (Sec. 3.5). Dropout (Sec. 4.2) zeroes the
    outputs of fc6 and fc7 in training; PyTorch's inverted dropout scales them by 2 in training instead of
    multiplying by 0.5 at test time, which gives the same test-time net.

    The paper states 224x224 inputs, but an 11x11 stride-4 convolution gives the 55x55 maps of Fig. 2 only
    from 227x227 ((227 - 11) / 4 + 1 = 55), so `img_size` defaults to 227; the fc6 input is 256 * 6 * 6 = 9216.
    The input size is fixed by fc6 and checked in `forward`. The classifier interface is `core.Classifier`'s,
    with fc8 as the head and fc7's output as the pooled features.

    Initialisation (Sec. 5): every weight from a zero-mean Gaussian with standard deviation `init_std` = 0.01;
    the biases of conv2, conv4, conv5, fc6 and fc7 are 1 ("provides the ReLUs with positive inputs"), the
    others 0.
    """

    classifier_name = "fc8"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, img_size: int = 227,
                 widths: tuple[int, ...] | list[int] = (96, 256, 384, 384, 256), hidden_dim: int = 4096,
                 conv1_kernel: int = 11, conv1_stride: int = 4, conv1_padding: int = 0, conv2_kernel: int = 5,
                 groups: int = 2, activation: str = "relu", dropout: float = 0.5, init_std: float = 0.01):
        super().__init__()
        if num_classes < 0 or in_chans < 1:
            raise ValueError(f"num_classes must be >= 0 and in_chans >= 1, got {num_classes} and {in_chans}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if len(widths) != 5:
            raise ValueError(f"widths must give the kernels of the 5 convolutional layers, got {tuple(widths)}")
        if any(w % groups for w in widths):
            raise ValueError(f"every width must be divisible by groups={groups}, got {tuple(widths)}")
        if conv2_kernel % 2 == 0:
            raise ValueError(f"conv2_kernel must be odd (its padding keeps the map size), got {conv2_kernel}")
        size = conv_out(img_size, conv1_kernel, conv1_stride, conv1_padding)   # conv1
        for _ in range(3):                                                     # pool1, pool2, pool5
            size = conv_out(size, 3, 2)
        if size < 1:
            raise ValueError(f"img_size {img_size} is too small for this net: the map after pool5 would be empty")
        self.num_classes, self.in_chans, self.img_size, self.init_std = num_classes, in_chans, img_size, init_std
        self.default_input_size = (in_chans, img_size, img_size)
        self.activation = activation
        act = ACTIVATIONS[activation]
        c1, c2, c3, c4, c5 = widths
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_chans, c1, conv1_kernel, stride=conv1_stride, padding=conv1_padding)),
            ("act1", act()),
            ("norm1", LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)),
            ("pool1", overlapping_max_pool()),
            ("conv2", nn.Conv2d(c1, c2, conv2_kernel, padding=conv2_kernel // 2, groups=groups)),
            ("act2", act()),
            ("norm2", LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)),
            ("pool2", overlapping_max_pool()),
            ("conv3", nn.Conv2d(c2, c3, 3, padding=1)),
            ("act3", act()),
            ("conv4", nn.Conv2d(c3, c4, 3, padding=1, groups=groups)),
            ("act4", act()),
            ("conv5", nn.Conv2d(c4, c5, 3, padding=1, groups=groups)),
            ("act5", act()),
            ("pool5", overlapping_max_pool()),
        ]))
        self.feature_shape = (c5, size, size)                                  # (256, 6, 6) for alexnet
        self.pre_logits = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(c5 * size * size, hidden_dim)),
            ("act6", act()),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(hidden_dim, hidden_dim)),
            ("act7", act()),
            ("drop7", nn.Dropout(dropout)),
        ]))
        self.num_features = hidden_dim
        self.fc8 = self.new_head(num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Sec. 5: weights ~ N(0, init_std^2); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere."""
        ones = {self.features.conv2, self.features.conv4, self.features.conv5,
                self.pre_logits.fc6, self.pre_logits.fc7}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, mean=0.0, std=self.init_std)
                nn.init.constant_(m.bias, 1.0 if m in ones else 0.0)

    def new_head(self, num_classes: int) -> nn.Module:
        """fc8 with `num_classes` outputs, initialised as in Sec. 5: weights N(0, init_std^2), bias 0."""
        return init_head(super().new_head(num_classes), self.init_std)

    def forward_features(self, x: Tensor) -> Tensor:                          # (B, C, H, W)
        x = check_image(x, self, C=self.in_chans, H=self.img_size, W=self.img_size)
        return self.features(x)                                                # (B, 256, 6, 6)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:    # (B, 256, 6, 6)
        x = self.pre_logits(x.flatten(1))                                      # (B, 9216) -> (B, 4096)
        return x if pre_logits else self.fc8(x)                                # (B, num_classes)


# pretrained_cfg normalisation: the paper subtracts the mean activity over the training set from each pixel of the
# raw RGB values and does nothing else (Sec. 2); for inputs in [0, 1] that is (x - mean) / (1/255) with ImageNet's
# per-channel mean standing in for the per-pixel mean image.
@register_model(paper="alexnet", input_size=(3, 227, 227), mean=IMAGENET_MEAN, std=(1 / 255,) * 3, num_classes=1000,
                task="image-classification", fixed_input_size=True, min_input_size=(3, 67, 67))
def alexnet(**kwargs) -> AlexNet:
    """AlexNet (Sec. 3.5, Fig. 2): 227x227x3 inputs, 1000 classes, 60,965,224 parameters ("60 million", Sec. 4)."""
    return AlexNet(**kwargs)


@register_model(paper="alexnet", input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10,
                task="image-classification", fixed_input_size=True, min_input_size=(1, 15, 15))
def alexnet_small(**kwargs) -> AlexNet:
    """AlexNet scaled to 28x28 grey images (Fashion-MNIST; `img_size=32` for CIFAR-sized inputs).

    conv1 is 5x5 with stride 1 and padding 2 instead of 11x11 with stride 4, the layers have a quarter of the
    kernels (24, 64, 96, 96, 64) and fc6/fc7 have 512 units; LRN, the 3/2 overlapping pools, the two-GPU groups
    and dropout are kept. Maps: 28 -> pool1 13 -> pool2 6 -> pool5 2; 10 classes, 543,930 parameters.
    """
    cfg = dict(num_classes=10, in_chans=1, img_size=28, widths=(24, 64, 96, 96, 64), hidden_dim=512,
               conv1_kernel=5, conv1_stride=1, conv1_padding=2)
    return AlexNet(**{**cfg, **kwargs})
