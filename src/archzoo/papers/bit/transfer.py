r"""The BiT-HyperRule and the fine-tuning protocol it configures (Kolesnikov et al. 2019, arXiv:1912.11370, Sec. 3.3).

BiT transfers to every downstream task with one fixed recipe instead of a hyper-parameter search: SGD with
momentum 0.9, initial learning rate 0.003, batch size 512, no weight decay, the head initialised to zeros, and
three settings chosen from the task's size and image resolution alone:

    | labelled examples | schedule      | MixUp        |     | image size  | resize -> random crop |
    |-------------------|---------------|--------------|     |-------------|-----------------------|
    | < 20k (small)     | 500 steps     | none         |     | < 96x96 px  | 160 -> 128            |
    | < 500k (medium)   | 10k steps     | alpha = 0.1  |     | otherwise   | 448 -> 384            |
    | >= 500k (large)   | 20k steps     | alpha = 0.1  |
    the learning rate is divided by 10 at 30%, 60% and 90% of the steps.

At training time an image is resized to a square, a random crop is taken and it is flipped horizontally at
random; at test time it is only resized to the crop size. "In some tasks horizontal flipping or cropping destroys
the label semantics ... In these cases we omit flipping or cropping when appropriate" (`flip=False`, `crop=False`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ...core.checks import check_shape
from ...engine.schedules import step_decay, step_decay_factor
from ...engine.train import train

SMALL_TASK, MEDIUM_TASK = 20_000, 500_000       # examples: schedule and MixUp thresholds
SCHEDULE_STEPS = (500, 10_000, 20_000)          # small, medium, large
SMALL_IMAGE = 96                                # images under 96x96 pixels count as small
DECAY_AT = (0.3, 0.6, 0.9)                      # fractions of the schedule where the learning rate drops 10x


@dataclass(frozen=True)
class HyperRule:
    """One fine-tuning configuration of the BiT-HyperRule (Sec. 3.3); `hyperrule()` builds it from a task."""

    steps: int
    resize: int                 # training images are resized to resize x resize ...
    crop: int                   # ... then randomly cropped to crop x crop; test images are resized to crop x crop
    mixup_alpha: float          # 0: no MixUp
    lr: float = 0.003
    batch_size: int = 512
    momentum: float = 0.9
    flip: bool = True

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or not 1 <= self.crop <= self.resize or self.mixup_alpha < 0:
            raise ValueError(f"need steps >= 1, batch_size >= 1, 1 <= crop <= resize and mixup_alpha >= 0, got {self}")

    @property
    def decay_steps(self) -> tuple[int, ...]:
        """The steps where the learning rate is divided by 10: 30%, 60%, 90% of the schedule."""
        return tuple(round(f * self.steps) for f in DECAY_AT)

    def lr_at(self, step: int) -> float:
        """The learning rate of the update at `step` (0-based): lr / 10 per decay step passed."""
        return self.lr * step_decay_factor(step, steps=self.steps, at=DECAY_AT)

    def scaled(self, *, step_scale: float = 1.0, crop: int | None = None, batch_size: int | None = None,
               lr: float | None = None) -> HyperRule:
        """The same rule on a smaller budget: `step_scale` x the steps (decays keep their 30/60/90% positions),
        a crop of `crop` pixels with the resize scaled by the same ratio (160/128 stays 1.25), another batch size,
        another learning rate. Momentum, MixUp and flipping are kept."""
        crop = crop or self.crop
        return replace(self, steps=max(1, round(self.steps * step_scale)), crop=crop,
                       resize=round(self.resize * crop / self.crop), batch_size=batch_size or self.batch_size,
                       lr=self.lr if lr is None else lr)


def hyperrule(dataset_size: int, image_size: int | tuple[int, int], flip: bool = True, crop: bool = True) -> HyperRule:
    """The BiT-HyperRule (Sec. 3.3): schedule, resolution and MixUp from the number of labelled examples and the
    (H, W) of the task's images; SGD with lr 0.003, momentum 0.9, batch 512. `flip=False` / `crop=False` omit the
    flip / the random crop (then images are resized straight to the crop size) where they would destroy the labels.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if dataset_size < 1 or h < 1 or w < 1:
        raise ValueError(f"need dataset_size >= 1 and a positive image size, got {dataset_size} and {image_size}")
    small, medium, large = SCHEDULE_STEPS
    steps = small if dataset_size < SMALL_TASK else medium if dataset_size < MEDIUM_TASK else large
    resize, size = (160, 128) if h * w < SMALL_IMAGE * SMALL_IMAGE else (448, 384)
    return HyperRule(steps=steps, resize=resize if crop else size, crop=size,
                     mixup_alpha=0.0 if dataset_size < SMALL_TASK else 0.1, flip=flip)


# ----------------------------------------------------------------------------- pre-processing and MixUp


def resize_crop_flip(x: Tensor, resize: int, crop: int, flip: bool) -> Tensor:   # (B, C, H, W)
    """Resize to a `resize` square, take a random `crop` square per image, flip half of them (if `flip`)."""
    check_shape(x, "B C H W", name="images", dtype="float")
    if not 1 <= crop <= resize:
        raise ValueError(f"need 1 <= crop <= resize, got crop {crop} and resize {resize}")
    x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False)   # (B, C, R, R)
    b, span = x.shape[0], resize - crop + 1
    top, left = torch.randint(span, (b,)), torch.randint(span, (b,))
    x = torch.stack([img[:, i:i + crop, j:j + crop] for img, i, j in zip(x, top.tolist(), left.tolist())])
    if flip:
        mirror = torch.rand(b) < 0.5
        x = torch.where(mirror.view(b, 1, 1, 1).to(x.device), x.flip(-1), x)
    return x                                                                 # (B, C, crop, crop)


def preprocess_train(x: Tensor, rule: HyperRule) -> Tensor:                  # (B, C, H, W)
    """The HyperRule's training pre-processing: resize to `rule.resize`, random `rule.crop` crop, random flip."""
    return resize_crop_flip(x, rule.resize, rule.crop, rule.flip)           # (B, C, crop, crop)


def preprocess_test(x: Tensor, rule: HyperRule) -> Tensor:                   # (B, C, H, W)
    """At test time the image is only resized, to the training crop size."""
    check_shape(x, "B C H W", name="images", dtype="float")
    return F.interpolate(x, size=(rule.crop, rule.crop), mode="bilinear", align_corners=False)


def mixup_cross_entropy(model: nn.Module, x: Tensor, y: Tensor, alpha: float) -> Tensor:
    r"""MixUp (Zhang et al. 2018), used by the HyperRule on medium and large tasks: with lambda ~ Beta(alpha, alpha)
    and a random pairing pi of the batch, train on lambda x + (1 - lambda) x_pi against the same mixture of the two
    cross-entropies. alpha = 0 is plain cross-entropy."""
    if alpha == 0:
        return F.cross_entropy(model(x), y)
    lam = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], device=x.device)
    logits = model(lam * x + (1 - lam) * x[perm])
    return lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])


def fine_tune(model: nn.Module, dataset: Dataset, rule: HyperRule, *, seed: int = 0, device="cpu",
              progress: bool = False, desc: str | None = None) -> list[dict]:
    """Fine-tune the whole `model` on `dataset` (images, labels) with `rule`; returns the per-step history.

    The engine's loop with plain SGD with momentum and the HyperRule's piecewise-constant learning rate
    (`engine.schedules.step_decay`: 10x drops at 30/60/90%). Batches come from the engine's sampler (a pure
    function of seed and step; a task smaller than the batch is repeated, each copy with its own random crop);
    every batch goes through `preprocess_train` and, if the rule says so, MixUp.
    """
    def loss_fn(net: nn.Module, batch) -> Tensor:
        x, y = batch
        return mixup_cross_entropy(net, preprocess_train(x, rule), y, rule.mixup_alpha)

    result = train(model, dataset, steps=rule.steps, batch_size=rule.batch_size, loss_fn=loss_fn, lr=rule.lr,
                   optimizer="sgd", momentum=rule.momentum,
                   schedule=lambda opt: step_decay(opt, steps=rule.steps, at=DECAY_AT), seed=seed, device=device,
                   progress=progress, desc=desc)
    return result.history
