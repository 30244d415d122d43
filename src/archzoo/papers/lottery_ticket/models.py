"""The networks of the Lottery Ticket paper (Frankle & Carbin 2018, arXiv:1803.03635, Fig. 2).

Presets, timm style (`archzoo.create_model("conv4", in_chans=1, img_size=28)` for Fashion-MNIST):

- `lenet_300_100`: the fully connected 784-300-100-10 LeNet on MNIST, 266,610 parameters (Fig. 2: "266K").
- `conv2`, `conv4`, `conv6`: VGG-like nets on CIFAR-10, 3x3 convolutions (64, 64 | 128, 128 | 256, 256 channels),
  a 2x2 max pool after each pair, then FC 256, 256, 10: 4,301,642 / 2,425,930 / 2,262,602 parameters (Fig. 2:
  "4.3M", "2.4M", "1.7M"; the layers Fig. 2 lists give Conv-6 2.26M, not 1.7M, so we build the layers).

Every weight starts from Gaussian Glorot initialisation (Fig. 2), every bias at zero. `PAPER_TRAINING` holds
Fig. 2's optimizer, learning rate, batch and iterations, and the per-layer pruning rates of each net.
"""

from __future__ import annotations

from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier
from ...registry import register_model

# Fig. 2: Adam, learning rate, batch 60, training iterations, and the pruning rate of each kind of layer (the output
# layer is pruned at half the rate of the other fully connected layers, Sec. 2 and 3).
PAPER_TRAINING = {
    "lenet_300_100": dict(optimizer="adam", lr=1.2e-3, batch_size=60, steps=50_000, rates=dict(fc=0.2, output=0.1)),
    "conv2": dict(optimizer="adam", lr=2e-4, batch_size=60, steps=20_000, rates=dict(conv=0.1, fc=0.2, output=0.1)),
    "conv4": dict(optimizer="adam", lr=3e-4, batch_size=60, steps=25_000, rates=dict(conv=0.1, fc=0.2, output=0.1)),
    "conv6": dict(optimizer="adam", lr=3e-4, batch_size=60, steps=30_000, rates=dict(conv=0.15, fc=0.2, output=0.1)),
}


def glorot_init(model: nn.Module) -> nn.Module:
    """Gaussian Glorot initialisation (Fig. 2): every conv and linear weight N(0, 2 / (fan_in + fan_out)), biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return model


class GlorotClassifier(Classifier, nn.Module):
    """The head of the paper's nets: a Glorot-initialised linear layer on the last hidden layer's activations."""

    def new_head(self, num_classes: int) -> nn.Module:
        return glorot_init(super().new_head(num_classes))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:   # (B, num_features)
        return x if pre_logits else self.head(x)                      # (B, num_classes)


class LeNet300100(GlorotClassifier):
    """LeNet-300-100 (LeCun et al. 1998; Fig. 2): the image flattened, two ReLU layers of 300 and 100 units."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28, hidden=(300, 100)):
        super().__init__()
        self.in_chans, self.img_size, self.default_input_size = in_chans, img_size, (in_chans, img_size, img_size)
        self.num_classes, self.num_features = num_classes, hidden[-1]
        widths = (in_chans * img_size * img_size, *hidden)
        self.features = nn.Sequential(*(layer for a, b in zip(widths, widths[1:]) for layer in (nn.Linear(a, b),
                                                                                               nn.ReLU())))
        self.head = self.new_head(num_classes)
        glorot_init(self)

    def forward_features(self, x: Tensor) -> Tensor:                   # (B, C, H, W)
        x = check_image(x, self, C=self.in_chans, H=self.img_size, W=self.img_size)
        return self.features(x.flatten(1))                            # (B, C H W) -> (B, 100)


class ConvNet(GlorotClassifier):
    """Conv-2/4/6 (Fig. 2, after VGG): pairs of 3x3 'same' convolutions with ReLUs, each pair followed by a 2x2 max
    pool, then fully connected ReLU layers and the output layer."""

    def __init__(self, channels=(64, 64), fc=(256, 256), num_classes: int = 10, in_chans: int = 3, img_size: int = 32):
        super().__init__()
        pools = len(channels) // 2
        if len(channels) % 2 or not channels:
            raise ValueError(f"channels must come in pairs (a 2x2 max pool after each pair), got {tuple(channels)}")
        if img_size < 2 ** pools:
            raise ValueError(f"img_size must be >= {2 ** pools} for {pools} max pools of 2x2, got {img_size}")
        self.in_chans, self.img_size, self.default_input_size = in_chans, img_size, (in_chans, img_size, img_size)
        self.min_input_size = (in_chans, 2 ** pools, 2 ** pools)
        self.num_classes, self.num_features = num_classes, fc[-1]
        layers, c = [], in_chans
        for i, width in enumerate(channels):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            if i % 2:
                layers.append(nn.MaxPool2d(2))
            c = width
        self.convs = nn.Sequential(*layers)
        side = img_size // 2 ** pools
        widths = (c * side * side, *fc)
        self.fc = nn.Sequential(*(layer for a, b in zip(widths, widths[1:]) for layer in (nn.Linear(a, b), nn.ReLU())))
        self.head = self.new_head(num_classes)
        glorot_init(self)

    def forward_features(self, x: Tensor) -> Tensor:                   # (B, C, H, W)
        x = check_image(x, self, C=self.in_chans, H=self.img_size, W=self.img_size)
        return self.fc(self.convs(x).flatten(1))                      # (B, c, H / 2^p, W / 2^p) -> (B, 256)


# pretrained_cfg: the paper's inputs (MNIST 28x28 grey, CIFAR-10 32x32 RGB) as values in [0, 1]; the paper names no
# other normalisation. `in_chans=1, img_size=28` fits Fashion-MNIST.
MNIST_CFG = dict(input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10, task="image-classification",
                 fixed_input_size=True)


def cifar_cfg(pools: int) -> dict:
    return dict(input_size=(3, 32, 32), mean=(0.0,) * 3, std=(1.0,) * 3, num_classes=10,
                task="image-classification", fixed_input_size=True, min_input_size=(3, 2 ** pools, 2 ** pools))


@register_model(paper="lottery_ticket", **MNIST_CFG)
def lenet_300_100(**kwargs) -> LeNet300100:
    """LeNet-300-100 on 28x28 MNIST (Fig. 2): 266,610 parameters."""
    return LeNet300100(**kwargs)


@register_model(paper="lottery_ticket", **cifar_cfg(1))
def conv2(**kwargs) -> ConvNet:
    """Conv-2 on CIFAR-10 (Fig. 2): 64, 64, pool; FC 256, 256, 10; 4,301,642 parameters."""
    return ConvNet(channels=(64, 64), **kwargs)


@register_model(paper="lottery_ticket", **cifar_cfg(2))
def conv4(**kwargs) -> ConvNet:
    """Conv-4 on CIFAR-10 (Fig. 2): 64, 64, pool, 128, 128, pool; FC 256, 256, 10; 2,425,930 parameters."""
    return ConvNet(channels=(64, 64, 128, 128), **kwargs)


@register_model(paper="lottery_ticket", **cifar_cfg(3))
def conv6(**kwargs) -> ConvNet:
    """Conv-6 on CIFAR-10 (Fig. 2): 64, 64, pool, 128, 128, pool, 256, 256, pool; FC 256, 256, 10; 2,262,602
    parameters."""
    return ConvNet(channels=(64, 64, 128, 128, 256, 256), **kwargs)
