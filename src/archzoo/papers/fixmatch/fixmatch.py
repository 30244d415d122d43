r"""FixMatch (Sohn et al. 2020, arXiv:2001.07685, Sec. 2.2, Algorithm 1) as a Trainer step for any classifier.

A labelled batch X = {(x_b, p_b)}, b = 1..B, and an unlabelled batch U = {u_b}, b = 1..mu B, per step. The
model's prediction on a weakly augmented view alpha(u_b) becomes a hard pseudo-label when it is confident; the
model is then trained to predict that label on a strongly augmented view A(u_b):

    l_s = 1/B sum_b H(p_b, p_m(y | alpha(x_b)))                                            (Eq. 2)
    q_b = p_m(y | alpha(u_b)),   \hat q_b = argmax q_b   (a constant: no gradient flows into it)
    l_u = 1/(mu B) sum_b 1(max q_b >= tau) H(\hat q_b, p_m(y | A(u_b)))                    (Eq. 4)
    loss = l_s + lambda_u l_u                                                               (Sec. 2.2)

`fixmatch_loss` computes Eq. 2-4 from the three sets of logits; `FixMatch` is the step
`step(trainer, batches)` of `engine.trainer.Trainer` over the streams `labeled` (x, y) and `unlabeled` (u, _):
it draws the views (`augment.weak_augment`, `augment.strong_augment`) from a generator seeded with (trainer seed,
step), so a resumed run draws the same views, and runs one forward pass over the concatenation
[alpha(x); alpha(u); A(u)], as the authors' code does (batch norm sees all three). The EMA copy of the weights
that the paper evaluates (Sec. 4.1) is the engine's `engine.hooks.EMA` hook. Without an unlabelled stream the
same step is the supervised baseline on weakly augmented labelled data (l_s alone).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .augment import strong_augment, weak_augment


def pseudo_labels(logits_weak: Tensor, threshold: float = 0.95) -> tuple[Tensor, Tensor]:
    r"""(\hat q_b, 1(max q_b >= tau)) from the weak view's logits (mu B, K), detached: hard labels (mu B,) and the
    confidence mask (mu B,) as a bool."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold tau must be in [0, 1], got {threshold}")
    confidence, label = logits_weak.detach().softmax(-1).max(-1)          # max q_b, argmax q_b
    return label, confidence >= threshold


def fixmatch_loss(logits_x: Tensor, y: Tensor, logits_weak: Tensor, logits_strong: Tensor, *,
                  threshold: float = 0.95, lambda_u: float = 1.0) -> tuple[Tensor, dict]:
    """Eq. 2-4: `loss = l_s + lambda_u l_u` and its parts.

    `logits_x` (B, K) of the weakly augmented labelled images with labels `y` (B,); `logits_weak` and
    `logits_strong` (mu B, K) of the weak and strong views of the same unlabelled images. The pseudo-labels
    and the mask come from `logits_weak` detached. Returns (loss, metrics): `loss_s`, `loss_u`, `mask_rate`
    (the share of confident unlabelled images) and `pseudo_label_count` (how many there were).
    """
    if logits_x.dim() != 2 or logits_weak.shape != logits_strong.shape or logits_weak.dim() != 2 \
            or logits_x.shape[1] != logits_weak.shape[1]:
        raise ValueError(f"expected logits (B, K), (mu B, K), (mu B, K), got {tuple(logits_x.shape)}, "
                         f"{tuple(logits_weak.shape)}, {tuple(logits_strong.shape)}")
    if y.shape != logits_x.shape[:1]:
        raise ValueError(f"expected labels ({logits_x.shape[0]},), got {tuple(y.shape)}")
    loss_s = F.cross_entropy(logits_x, y)                                  # Eq. 2
    pseudo_label, confident = pseudo_labels(logits_weak, threshold)        # a constant target: no gradient
    mask = confident.to(logits_strong.dtype)
    loss_u = (F.cross_entropy(logits_strong, pseudo_label, reduction="none") * mask).mean()   # Eq. 4: 1/(mu B)
    metrics = {"loss_s": loss_s.detach(), "loss_u": loss_u.detach(), "mask_rate": mask.mean(),
               "pseudo_label_count": mask.sum()}
    return loss_s + lambda_u * loss_u, metrics


def cosine_decay(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """FixMatch's learning-rate schedule (Sec. 4.1, Appendix B.1): eta cos(7 pi k / (16 K)) at step k of K."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: math.cos(7 * math.pi * k / (16 * steps)))


class FixMatch:
    """The FixMatch training step (see the module's docstring) for the model `model` of the trainer.

        step = FixMatch(threshold=0.95, lambda_u=1.0)
        Trainer(net, opt, cosine_decay(opt, K), steps=K, step=step, hooks=[EMA("model", 0.999)],
                data={"labeled": labeled, "unlabeled": unlabeled},
                batch_size={"labeled": B, "unlabeled": mu * B}).fit()

    The unlabelled ratio mu is the ratio of the two streams' batch sizes. Logged per step: `loss`, `loss_s`,
    `loss_u`, `mask_rate` and `pseudo_label_accuracy` (the confident pseudo-labels that are right, where the
    unlabelled stream carries its true labels, as in our claim; only at steps where one is confident).
    """

    def __init__(self, *, threshold: float = 0.95, lambda_u: float = 1.0, model: str | None = None,
                 randaugment_ops: int = 2, cutout_size: float = 0.5):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold tau must be in [0, 1], got {threshold}")
        if lambda_u < 0:
            raise ValueError(f"lambda_u must be >= 0, got {lambda_u}")
        self.threshold, self.lambda_u, self.model = threshold, lambda_u, model
        self.randaugment_ops, self.cutout_size = randaugment_ops, cutout_size

    def generator(self, trainer) -> torch.Generator:
        """The generator of this step's augmentations: a pure function of (trainer seed, step, rank)."""
        seed = np.random.SeedSequence([trainer.seed, trainer.step, trainer.rank, 0xF1C5]).generate_state(1, np.uint64)
        return torch.Generator().manual_seed(int(seed[0]))

    def __call__(self, trainer, batches: dict) -> dict:
        net = trainer.nets[trainer.only("models", self.model)]
        g = self.generator(trainer)
        x, y = batches["labeled"]
        x = weak_augment(x.cpu(), g).to(x.device)                         # alpha(x_b)
        if "unlabeled" not in batches:                                     # the supervised baseline: Eq. 2 alone
            loss_s = F.cross_entropy(net(x), y)
            return {"loss": trainer.backward(loss_s), "loss_s": float(loss_s.detach())}
        u, u_labels = batches["unlabeled"]
        u_cpu = u.cpu()
        u_weak = weak_augment(u_cpu, g).to(u.device)                       # alpha(u_b)
        u_strong = strong_augment(u_cpu, g, n=self.randaugment_ops, cutout_size=self.cutout_size).to(u.device)
        logits = net(torch.cat([x, u_weak, u_strong]))                     # one pass, as the authors' code
        logits_x, logits_weak, logits_strong = logits.split([len(x), len(u), len(u)])
        loss, metrics = fixmatch_loss(logits_x, y, logits_weak, logits_strong, threshold=self.threshold,
                                      lambda_u=self.lambda_u)
        label, confident = pseudo_labels(logits_weak, self.threshold)
        if confident.any():                                                # diagnostics only: u's labels are unused
            metrics["pseudo_label_accuracy"] = (label == u_labels)[confident].float().mean()
        return {"loss": trainer.backward(loss), **{k: float(v) for k, v in metrics.items()}}
