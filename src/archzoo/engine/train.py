"""Training in one call: thin wrappers on the Trainer for one model, one optimizer, one labelled stream.

    result = train(model, data.train, steps=500, batch_size=64, lr=3e-3, warmup_steps=50)
    metrics = evaluate(model, data.test)                  # {"accuracy": 97.1, "error": 2.9, "loss": 0.1}
    fit = fit_and_eval(model, data, steps=500, batch_size=64)

Training counts steps, not epochs; the batch at step t is a pure function of (seed, t) (see
`engine.streams`), so a resumed run sees exactly the batches of an uninterrupted one. Anything
beyond one model and one stream (two players, several streams, hooks, EMA, evaluations during
training) uses `engine.trainer.Trainer` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from .runtime import process_device
from .schedules import lr_factor, warmup_schedule
from .streams import StepSampler, gather, to_device
from .trainer import Trainer, TrainResult, class_last, cross_entropy_loss, supervised_step

# the names this module has always exported, several of them now defined in streams, schedules and trainer
__all__ = ["FitResult", "StepSampler", "TrainResult", "build_optimizer", "check_train_args", "cross_entropy_loss",
           "evaluate", "fit_and_eval", "gather", "lr_factor", "to_device", "train"]

OPTIMIZERS = ("adamw", "adam", "sgd")
TRAIN_EVAL_SAMPLES = 10_000         # fit_and_eval measures training error on at most this many samples


@dataclass
class FitResult:
    accuracy: float                 # test accuracy, percent
    error: float                    # test error, percent
    loss: float                     # test cross-entropy
    train_loss: float | None        # cross-entropy on (a subset of) the training set, eval mode
    train_error: float | None       # error on (a subset of) the training set, eval mode, percent
    history: list[dict]


# ----------------------------------------------------------------------------- optimizer


def build_optimizer(model: nn.Module, name, *, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    nesterov: bool = False) -> torch.optim.Optimizer:
    """`adamw`, `adam` or `sgd` (heavy-ball momentum, Nesterov's if asked) over all parameters;
    a callable `name(model) -> Optimizer` builds its own (e.g. parameter groups)."""
    if callable(name):
        return name(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} or a callable, got {name!r}")


# ----------------------------------------------------------------------------- the loop


def check_train_args(*, steps: int, batch_size: int, checkpoint_every: int = 0, grad_clip: float | None = None,
                     warmup_steps: int = 0) -> None:
    """The checks of `train`'s arguments, before anything is built (the CLI calls it before loading data)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    if grad_clip is not None and not grad_clip > 0:     # a negative max norm would reverse the gradients
        raise ValueError(f"grad_clip must be > 0 (or None for no clipping), got {grad_clip}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")


def train(model: nn.Module, dataset: Dataset, *, steps: int, batch_size: int, loss_fn=None, lr: float = 1e-3,
          optimizer="adamw", weight_decay: float = 0.0, momentum: float = 0.9, warmup_steps: int = 0,
          schedule="cosine", grad_clip: float | None = None, seed: int = 0, device="cpu", amp=False,
          compile: bool = False, log_path=None, checkpoint_dir=None, checkpoint_every: int = 0,
          resume: bool = False, progress: bool = True, desc: str | None = None, min_lr: float = 0.0,
          nesterov: bool = False) -> TrainResult:
    """Train `model` in place for `steps` optimizer steps on batches of `dataset` (a `Trainer` with the
    supervised step).

    - `loss_fn(model, batch) -> loss` or `(loss, {name: float})`; default: cross-entropy of
      `model(x)` against `y`. Under DDP or `compile` it receives the wrapped model.
    - `optimizer`: "adamw", "adam", "sgd" (`momentum`, `nesterov`) or `f(model) -> Optimizer`;
      learning rate: linear warm-up over `warmup_steps`, then `schedule` ("cosine" or "linear"
      down to `min_lr`, or "constant"), or `schedule=f(optimizer) -> LRScheduler` (e.g.
      `engine.schedules.step_decay`); `grad_clip` caps the global gradient norm.
    - `amp`: autocast on CUDA (True: bf16 where supported else fp16 with a GradScaler; or
      "bf16"/"fp16"); it has no effect on other devices. `compile` applies `torch.compile`.
    - `checkpoint_dir`: a checkpoint every `checkpoint_every` steps (0: only at the end) in
      `<checkpoint_dir>/last`; `resume=True` continues from it, bit for bit on CPU (no checkpoint there:
      CheckpointError, so nothing is overwritten). `grad_clip` > 0, `warmup_steps` >= 0.
    - Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DDP and `batch_size` is the
      per-process batch; only rank 0 shows progress and writes logs and checkpoints.

    The history has one entry per step: `step` (1-based), `loss` (mean over processes), `lr`,
    `grad_norm` (before clipping, when clipping) and the loss_fn's metrics (rank 0's). A loss that
    is NaN or infinite stops training with a FloatingPointError naming the step, before the update.
    """
    check_train_args(steps=steps, batch_size=batch_size, checkpoint_every=checkpoint_every, grad_clip=grad_clip,
                     warmup_steps=warmup_steps)
    device = process_device(device)
    model.to(device).train()
    opt = build_optimizer(model, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)
    if callable(schedule):
        scheduler = schedule(opt)
    else:
        scheduler = warmup_schedule(opt, steps=steps, warmup_steps=warmup_steps, schedule=schedule,
                                    min_ratio=min_lr / lr if lr else 0.0)
    trainer = Trainer(model, opt, scheduler, steps=steps, data=dataset, batch_size=batch_size,
                      step=supervised_step(loss_fn), grad_clip=grad_clip, seed=seed, device=device, amp=amp,
                      compile=compile, log_path=log_path, checkpoint_dir=checkpoint_dir,
                      checkpoint_every=checkpoint_every, progress=progress, desc=desc)
    return trainer.fit(resume=resume)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int = 512, device="cpu") -> dict:
    """Accuracy and error (percent) and mean cross-entropy of a classifier on `dataset`, in eval mode.

    Per-token outputs (B, N, V) against (B, N) targets count every token whose target is not -100.
    The model's train/eval mode is restored afterwards.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    loss_sum, correct, count = 0.0, 0, 0
    try:
        for i in range(0, len(dataset), batch_size):
            x, y = to_device(gather(dataset, torch.arange(i, min(i + batch_size, len(dataset)))), device)
            logits, y = class_last(model(x), y)
            keep = y != -100
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int(((logits.argmax(1) == y) & keep).sum())
            count += int(keep.sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: the dataset has no samples (or every target is -100)")
    accuracy = 100.0 * correct / count
    return {"accuracy": accuracy, "error": 100.0 - accuracy, "loss": loss_sum / count}


def _train_subset(dataset: Dataset, seed: int) -> Dataset:
    """At most TRAIN_EVAL_SAMPLES samples of the training set, drawn with `seed`."""
    n = len(dataset)
    if n <= TRAIN_EVAL_SAMPLES:
        return dataset
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:TRAIN_EVAL_SAMPLES].sort().values
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[keep] for t in dataset.tensors))
    return torch.utils.data.Subset(dataset, keep.tolist())


def fit_and_eval(model: nn.Module, data, *, steps: int, batch_size: int, seed: int = 0, eval_train: bool = True,
                 **train_kw) -> FitResult:
    """Train on `data.train` (see `train`), then evaluate on `data.test` and, when `eval_train`, on
    at most 10,000 training samples in eval mode (otherwise train_loss and train_error are None)."""
    result = train(model, data.train, steps=steps, batch_size=batch_size, seed=seed, **train_kw)
    device = train_kw.get("device", "cpu")
    test = evaluate(model, data.test, device=device)
    fit = evaluate(model, _train_subset(data.train, seed), device=device) if eval_train else {}
    return FitResult(accuracy=test["accuracy"], error=test["error"], loss=test["loss"],
                     train_loss=fit.get("loss"), train_error=fit.get("error"), history=result.history)
