"""The MNIST network of Sec. 4.1 (Ioffe & Szegedy 2015, arXiv:1502.03167), with and without Batch Normalization.

"a very simple network, with a 28x28 binary image as input, and 3 fully-connected hidden layers with 100
activations each. Each hidden layer computes y = g(Wu + b) with sigmoid nonlinearity, and the weights W
initialized to small random Gaussian values. The last hidden layer is followed by a fully-connected layer with 10
activations (one per class) and cross-entropy loss." With BN every hidden layer computes y = g(BN(Wu)): the bias
b is dropped because the mean subtraction cancels it and beta takes its role (Sec. 3.2).

Presets: `mnist_mlp` (99,710 parameters) and `mnist_mlp_bn` (100,010 parameters: three 100-unit biases fewer,
three gamma and beta pairs more).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier, init_head
from ...registry import register_model
from .batch_norm import BatchNorm1d


class SigmoidMLP(Classifier, nn.Module):
    """Fully connected sigmoid network of Sec. 4.1: flatten -> [Linear -> (BN) -> sigmoid] x 3 -> Linear.

    `sigmoid_inputs(x)` returns the input of every hidden layer's sigmoid (Wu + b, or BN(Wu)): the quantity
    whose distribution Fig. 1(b, c) follows over training. Weights start as N(0, init_std^2) ("small random
    Gaussian values"; the paper does not give the scale), biases at zero. The classifier interface is
    `core.Classifier`'s: the features are the last hidden layer's sigmoid outputs.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 hidden: tuple[int, ...] | list[int] = (100, 100, 100), batch_norm: bool = True,
                 init_std: float = 0.1):
        super().__init__()
        if num_classes < 0 or in_chans < 1 or img_size < 1 or not hidden:
            raise ValueError(f"need num_classes >= 0, in_chans >= 1, img_size >= 1 and at least one hidden layer, "
                             f"got {num_classes}, {in_chans}, {img_size}, {tuple(hidden)}")
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.default_input_size = (in_chans, img_size, img_size)
        widths = (in_chans * img_size * img_size, *hidden)
        self.linears = nn.ModuleList(nn.Linear(a, b, bias=not batch_norm) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(BatchNorm1d(w) if batch_norm else nn.Identity() for w in hidden)
        self.num_features, self.init_std = hidden[-1], init_std
        self.head = self.new_head(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def sigmoid_inputs(self, x: Tensor) -> list[Tensor]:                # (B, C, H, W)
        """The input of each hidden layer's sigmoid, Wu + b (plain) or BN(Wu) (Sec. 3.2): a list of (B, width)."""
        x = check_image(x, self, C=self.in_chans, H=self.img_size, W=self.img_size)
        h = x.flatten(1)                                                # u, (B, C*H*W)
        inputs = []
        for linear, norm in zip(self.linears, self.norms):
            inputs.append(norm(linear(h)))                              # (B, width)
            h = torch.sigmoid(inputs[-1])                               # y = g(BN(Wu)) or g(Wu + b)
        return inputs

    def forward_features(self, x: Tensor) -> Tensor:                    # (B, C, H, W)
        return torch.sigmoid(self.sigmoid_inputs(x)[-1])                # (B, num_features)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:   # (B, num_features)
        return x if pre_logits else self.head(x)                        # (B, num_classes)

    def new_head(self, num_classes: int) -> nn.Module:
        """A classifier with `num_classes` outputs, N(0, init_std^2) weights and zero bias (0: none)."""
        return init_head(super().new_head(num_classes), self.init_std)


# pretrained_cfg: 28x28 MNIST digits as they come, values in [0, 1] (Sec. 4.1); the first layer fixes the size.
MNIST_CFG = dict(input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10, task="image-classification",
                 fixed_input_size=True)


@register_model(paper="batch_norm", **MNIST_CFG)
def mnist_mlp(**kwargs) -> SigmoidMLP:
    """The Sec. 4.1 baseline: 784-100-100-100-10, sigmoid hidden units, 99,710 parameters."""
    return SigmoidMLP(batch_norm=False, **kwargs)


@register_model(paper="batch_norm", **MNIST_CFG)
def mnist_mlp_bn(**kwargs) -> SigmoidMLP:
    """The Sec. 4.1 network with BN before every hidden sigmoid, 100,010 parameters."""
    return SigmoidMLP(batch_norm=True, **kwargs)
