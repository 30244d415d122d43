"""The classifier interface every classifier of the course has, timm style.

    features = model.forward_features(x)          # the last representation before pooling
    logits = model.forward_head(features)         # pool (or pick a token) and classify: forward(x)
    pooled = model.forward_head(features, pre_logits=True)
    model.get_classifier()                        # the head module
    model.reset_classifier(10)                    # a new head with 10 outputs (0: none, forward returns `pooled`)

A model defines `forward_features`, `forward_head`, `num_features` (the width of `pooled`) and `num_classes`, and
keeps its head in the attribute named by `classifier_name`; `new_head(n)` builds a head as the paper initialises
it (override it where that is not PyTorch's default `nn.Linear`, e.g. with `init_head`), at construction and at
`reset_classifier`.
"""

from __future__ import annotations

from torch import Tensor, nn


class Classifier:
    """Mixin for an `nn.Module` classifier: `forward`, `get_classifier` and `reset_classifier` from the model's
    `forward_features`, `forward_head` and `new_head`."""

    classifier_name = "head"
    num_features: int
    num_classes: int

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def new_head(self, num_classes: int) -> nn.Module:
        """A classifier from `num_features` to `num_classes` (PyTorch's default initialisation), or none for 0."""
        return nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised head with `num_classes` outputs, on the device and in the dtype of the model
        (0: none, `forward` returns the pooled features). `pretrained_cfg["num_classes"]` follows."""
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        old = next(self.parameters())
        setattr(self, self.classifier_name, self.new_head(num_classes).to(old.device, old.dtype))
        self.num_classes = num_classes
        if isinstance(getattr(self, "pretrained_cfg", None), dict):
            self.pretrained_cfg["num_classes"] = num_classes


def init_head(head: nn.Module, std: float = 0.0) -> nn.Module:
    """`head` with weights N(0, std^2) and a zero bias; std = 0 gives a zero-initialised classifier (every logit
    starts at 0). An `nn.Identity` (no head) is returned as it is."""
    if isinstance(head, nn.Linear):
        if std:
            nn.init.normal_(head.weight, std=std)
        else:
            nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    return head
