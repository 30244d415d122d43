"""The MLP with a bottleneck on which the paper measures flattening (Sec. 3, Fig. 3: hidden layers, then a 12-unit
bottleneck whose class-conditional representations are decomposed by SVD).

Each hidden layer is a block `Linear -> ReLU` of `blocks`, so its output (post-activation) is a hidden state that
`ManifoldMixup` can mix; the last block is the bottleneck and feeds the linear classifier directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier
from ...registry import register_model


class BottleneckMLP(Classifier, nn.Module):
    """flatten -> [Linear -> ReLU] for each width in `hidden`, then `bottleneck` units -> linear head."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 hidden: Sequence[int] = (512, 512, 512), bottleneck: int = 12):
        super().__init__()
        if num_classes < 0 or in_chans < 1 or img_size < 1 or bottleneck < 1 or any(w < 1 for w in hidden):
            raise ValueError(f"need num_classes >= 0, in_chans, img_size, bottleneck and hidden widths >= 1, got "
                             f"{num_classes}, {in_chans}, {img_size}, {bottleneck}, {tuple(hidden)}")
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.default_input_size = (in_chans, img_size, img_size)
        widths = (in_chans * img_size * img_size, *hidden, bottleneck)
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(widths, widths[1:])))
        self.num_features = bottleneck
        self.head = self.new_head(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:                # (B, C, H, W) -> (B, bottleneck)
        x = check_image(x, self, C=self.in_chans, H=self.img_size, W=self.img_size)
        return self.blocks(x.flatten(1))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x if pre_logits else self.head(x)


@register_model(paper="manifold_mixup", input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10,
                task="image-classification", fixed_input_size=True)
def mixup_mlp(**kwargs) -> BottleneckMLP:
    """784-512-512-512-12-10, ReLU: three hidden layers and the paper's 12-unit bottleneck; 933,518 parameters
    (the 512 widths are ours)."""
    return BottleneckMLP(**kwargs)
