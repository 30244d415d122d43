"""The SupSup network of the PermutedMNIST experiments (Wortsman et al. 2020, Sec. 4, Fig. 3).

"a fully connected network with two hidden layers of size 1024" without biases (the authors' `FC1024`:
784 -> 1024 -> 1024 -> 10, ReLU), every layer a supermask layer over fixed signed-constant weights. Its
1,861,632 weights (784 x 1024 + 1024 x 1024 + 1024 x 10) are a buffer, shared by all tasks; each task owns one
score tensor per layer, 1,861,632 parameters per task, of which the mask keeps the top `sparsity` fraction.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier
from ...registry import register_model
from .supermask import SupermaskLinear


class SupSupMLP(Classifier, nn.Module):
    """Flatten -> [SupermaskLinear -> ReLU] x len(hidden) -> SupermaskLinear head; no biases, no trained weights.

    `set_task(model, i)` picks the mask of task i, `superpose(model, alphas)` mixes them (Eq. 3); the classifier
    interface is `core.Classifier`'s, the head being a supermask layer too (`new_head`).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 hidden: tuple[int, ...] | list[int] = (1024, 1024), num_tasks: int = 10, sparsity: float = 0.5):
        super().__init__()
        if num_classes < 0 or in_chans < 1 or img_size < 1 or not hidden:
            raise ValueError(f"need num_classes >= 0, in_chans >= 1, img_size >= 1 and at least one hidden layer, "
                             f"got {num_classes}, {in_chans}, {img_size}, {tuple(hidden)}")
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.num_tasks, self.sparsity = num_tasks, sparsity
        self.default_input_size = (in_chans, img_size, img_size)
        widths = (in_chans * img_size * img_size, *hidden)
        self.hidden = nn.ModuleList(SupermaskLinear(a, b, num_tasks, sparsity) for a, b in zip(widths, widths[1:]))
        self.num_features = hidden[-1]
        self.head = self.new_head(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:                    # (B, C, H, W)
        x = check_image(x, self, C=self.in_chans, H=self.img_size, W=self.img_size)
        h = x.flatten(1)                                                # (B, C*H*W)
        for layer in self.hidden:
            h = F.relu(layer(h))                                        # (B, width)
        return h                                                        # (B, num_features)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:   # (B, num_features)
        return x if pre_logits else self.head(x)                        # (B, num_classes)

    def new_head(self, num_classes: int) -> nn.Module:
        """A supermask layer with `num_classes` outputs and this network's tasks and sparsity (0: none)."""
        return SupermaskLinear(self.num_features, num_classes, self.num_tasks, self.sparsity) if num_classes \
            else nn.Identity()


# pretrained_cfg: 28x28 (Permuted) MNIST images in [0, 1]; the first layer fixes the size.
PERMUTED_MNIST_CFG = dict(input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10,
                          task="image-classification", fixed_input_size=True)


@register_model(paper="supsup", **PERMUTED_MNIST_CFG)
def supsup_fc1024(**kwargs) -> SupSupMLP:
    """FC 1024-1024 of Sec. 4.3 (the authors' `FC1024`): 1,861,632 fixed weights, as many scores per task."""
    return SupSupMLP(hidden=(1024, 1024), **kwargs)
