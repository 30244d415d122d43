"""The training engine: one step-based loop for every model of the course.

    result = train(model, data.train, steps=500, batch_size=64, lr=3e-3, warmup_steps=50)
    metrics = evaluate(model, data.test)                  # {"accuracy": 97.1, "error": 2.9, "loss": 0.1}
    fit = fit_and_eval(model, data, steps=500, batch_size=64)

Training counts steps, not epochs. The global batch at step t is the slice
[t*B, (t+1)*B) of an endless stream of epoch permutations, each drawn from a
generator seeded with (seed, epoch); it is a pure function of (seed, t), so a
resumed run sees exactly the batches of an uninterrupted one, and under DDP
(`torchrun`) rank r takes the r-th contiguous chunk of the same global batch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset, default_collate
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_checkpoint, resumable_checkpoint, save_checkpoint
from .claims import seed_everything

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "linear", "constant")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CHECKPOINT_NAME = "last"            # train() keeps its checkpoint in <checkpoint_dir>/last
TRAIN_EVAL_SAMPLES = 10_000         # fit_and_eval measures training error on at most this many samples


@dataclass
class TrainResult:
    history: list[dict]             # one entry per step: step, loss, lr (+ grad_norm, + the loss_fn's metrics)
    final_loss: float
    steps: int


@dataclass
class FitResult:
    accuracy: float                 # test accuracy, percent
    error: float                    # test error, percent
    loss: float                     # test cross-entropy
    train_loss: float | None        # cross-entropy on (a subset of) the training set, eval mode
    train_error: float | None       # error on (a subset of) the training set, eval mode, percent
    history: list[dict]


# ----------------------------------------------------------------------------- batches


class StepSampler:
    """The indices of the global batch at each step, a pure function of (seed, step).

    Epoch e is a permutation drawn from a generator seeded with (seed, e); the
    epochs are laid end to end and step t takes positions [t*B, (t+1)*B), so a
    batch may straddle two epochs and a dataset smaller than B still works.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int):
        if num_samples < 1:
            raise ValueError("the dataset is empty: expected at least 1 sample")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self._perms: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0])
            self._perms[epoch] = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(seed))
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        pos = step * self.batch_size + torch.arange(self.batch_size)
        epochs = pos // self.num_samples
        self._perms = {e: p for e, p in self._perms.items() if e >= int(epochs[0])}   # forget past epochs
        return torch.cat([self.permutation(int(e))[pos[epochs == e] % self.num_samples] for e in epochs.unique()])


def gather(dataset: Dataset, indices: torch.Tensor):
    """The samples at `indices`, collated into a batch (a TensorDataset is indexed directly)."""
    if isinstance(dataset, TensorDataset):
        return tuple(t[indices] for t in dataset.tensors)
    getitems = getattr(dataset, "__getitems__", None)
    items = getitems(indices.tolist()) if getitems else [dataset[i] for i in indices.tolist()]
    return default_collate(items)


def to_device(batch, device: torch.device):
    """Move every tensor of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


# ----------------------------------------------------------------------------- loss


def _class_last(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, ..., V) logits against (B, ...) targets become (N, V) against (N,); others pass unchanged."""
    if logits.dim() > 2 and logits.shape[:-1] == y.shape:
        return logits.flatten(0, -2), y.flatten()
    return logits, y


def cross_entropy_loss(model: nn.Module, batch) -> torch.Tensor:
    """The default loss: cross-entropy of `model(x)` against `y` (per token for (B, N, V) logits)."""
    x, y = batch
    return F.cross_entropy(*_class_last(model(x), y))


# ----------------------------------------------------------------------------- optimizer and schedule


def lr_factor(step: int, *, steps: int, warmup_steps: int = 0, schedule: str = "cosine",
              min_ratio: float = 0.0) -> float:
    """The multiplier of the base learning rate for the update at `step` (0-based).

    Linear warm-up (step+1)/warmup_steps, then over the remaining steps
    `cosine`: min + (1-min)(1 + cos(pi p))/2, `linear`: min + (1-min)(1 - p), or `constant`: 1,
    where p = (step - warmup_steps) / (steps - warmup_steps) goes from 0 towards 1.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    p = (step - warmup_steps) / max(1, steps - warmup_steps)
    decay = 0.5 * (1.0 + math.cos(math.pi * p)) if schedule == "cosine" else 1.0 - p
    return min_ratio + (1.0 - min_ratio) * decay


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


def _amp_dtype(amp, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: None off CUDA or when amp is False; True means bf16 where supported, else fp16."""
    if amp not in (False, True, "bf16", "fp16"):
        raise ValueError(f"amp must be False, True, 'bf16' or 'fp16', got {amp!r}")
    if not amp or device.type != "cuda":
        return None
    if amp is True:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AMP_DTYPES[amp]


# ----------------------------------------------------------------------------- progress and logs


class _Recorder:
    """History, the progress bar and the JSON-lines log of one run; only rank 0 shows and writes."""

    def __init__(self, *, steps: int, start: int, history: list, log_path, append: bool, progress: bool,
                 desc: str | None, main: bool):
        self.history = history
        self.bar = tqdm(total=steps, initial=start, desc=desc, disable=not (progress and main), dynamic_ncols=True)
        self.log = None
        if log_path is not None and main:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            self.log = open(log_path, "a" if append else "w", buffering=1)

    def record(self, entry: dict, samples_per_s: float) -> None:
        self.history.append(entry)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{entry['loss']:.4f}", samples_s=f"{samples_per_s:.0f}", refresh=False)
        if self.log is not None:
            self.log.write(json.dumps({**entry, "samples_per_s": round(samples_per_s, 1)}) + "\n")

    def close(self) -> None:
        self.bar.close()
        if self.log is not None:
            self.log.close()


# ----------------------------------------------------------------------------- the loop


def _check_args(steps, batch_size, checkpoint_dir, checkpoint_every, resume, grad_clip=None,
                warmup_steps=0) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")
    if grad_clip is not None and not grad_clip > 0:     # a negative max norm would reverse the gradients
        raise ValueError(f"grad_clip must be > 0 (or None for no clipping), got {grad_clip}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")


def _split_loss(out) -> tuple[torch.Tensor, dict]:
    """A loss_fn returns `loss` or `(loss, {name: float})`."""
    if isinstance(out, tuple):
        loss, metrics = out
        return loss, {k: float(v) for k, v in metrics.items()}
    return out, {}


def _step(net, params, batch, loss_fn, optimizer, scaler, grad_clip, amp_dtype, device, where: str) -> tuple:
    """Forward, backward, clip and update once; returns (loss averaged over processes, metrics, grad_norm or None).

    A loss that is NaN or infinite raises FloatingPointError before it can touch the weights.
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss, metrics = _split_loss(loss_fn(net, batch))
    value = float(distributed.all_reduce_mean(loss.detach().float()))
    if not math.isfinite(value):
        raise FloatingPointError(f"loss is {value} at {where}; try a lower lr or a grad_clip")
    scaler.scale(loss).backward()
    grad_norm = None
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        grad_norm = float(nn.utils.clip_grad_norm_(params, grad_clip))
    scaler.step(optimizer)
    scaler.update()
    return value, metrics, grad_norm


def train(model: nn.Module, dataset: Dataset, *, steps: int, batch_size: int, loss_fn=None, lr: float = 1e-3,
          optimizer="adamw", weight_decay: float = 0.0, momentum: float = 0.9, warmup_steps: int = 0,
          schedule: str = "cosine", grad_clip: float | None = None, seed: int = 0, device="cpu", amp=False,
          compile: bool = False, log_path=None, checkpoint_dir=None, checkpoint_every: int = 0,
          resume: bool = False, progress: bool = True, desc: str | None = None, min_lr: float = 0.0,
          nesterov: bool = False) -> TrainResult:
    """Train `model` in place for `steps` optimizer steps on batches of `dataset`.

    - `loss_fn(model, batch) -> loss` or `(loss, {name: float})`; default: cross-entropy of
      `model(x)` against `y`. Under DDP or `compile` it receives the wrapped model.
    - `optimizer`: "adamw", "adam", "sgd" (`momentum`, `nesterov`) or `f(model) -> Optimizer`;
      learning rate: linear warm-up over `warmup_steps`, then `schedule` ("cosine" or "linear"
      down to `min_lr`, or "constant"); `grad_clip` caps the global gradient norm.
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
    _check_args(steps, batch_size, checkpoint_dir, checkpoint_every, resume, grad_clip, warmup_steps)
    seed_everything(seed)
    device = torch.device(device)
    distributed.init_distributed("nccl" if device.type == "cuda" else "gloo")
    world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main_process()
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", distributed.local_rank())
    amp_dtype = _amp_dtype(amp, device)
    loss_fn = loss_fn or cross_entropy_loss
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(model, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)
    shape = dict(steps=steps, warmup_steps=warmup_steps, schedule=schedule, min_ratio=min_lr / lr if lr else 0.0)
    lr_factor(0, **shape)       # validates the schedule before anything runs
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_factor(t, **shape))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    start, history = 0, []
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume:              # no checkpoint raises: a resumed run never restarts at 0 over a folder it cannot read
        meta = load_checkpoint(resumable_checkpoint(ckpt), model=model, optimizer=opt, scheduler=scheduler,
                               map_location=device)
        start, history = meta["step"], meta["extra"].get("history", [])
        scaler.load_state_dict(meta["extra"].get("grad_scaler", scaler.state_dict()))

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        net = torch.compile(net)

    def save(step: int) -> None:
        if main:
            save_checkpoint(ckpt, model=model, optimizer=opt, scheduler=scheduler, step=step,
                            extra={"history": history, "grad_scaler": scaler.state_dict()})
        distributed.barrier()

    sampler = StepSampler(len(dataset), batch_size * world, seed)
    rec = _Recorder(steps=steps, start=start, history=history, log_path=log_path, append=start > 0,
                    progress=progress, desc=desc, main=main)
    try:
        for t in range(start, steps):
            t0 = time.perf_counter()
            indices = sampler.indices(t)[rank * batch_size:(rank + 1) * batch_size]
            batch = to_device(gather(dataset, indices), device)
            step_lr = opt.param_groups[0]["lr"]
            loss, metrics, grad_norm = _step(net, params, batch, loss_fn, opt, scaler, grad_clip, amp_dtype, device,
                                             where=f"step {t + 1} of {steps}")
            scheduler.step()
            entry = {"step": t + 1, "loss": loss, "lr": step_lr, **metrics}
            if grad_norm is not None:
                entry["grad_norm"] = grad_norm
            rec.record(entry, batch_size * world / (time.perf_counter() - t0))
            if ckpt is not None and checkpoint_every and (t + 1) % checkpoint_every == 0 and t + 1 < steps:
                save(t + 1)
    finally:
        rec.close()
    if ckpt is not None and start < steps:
        save(steps)
    return TrainResult(history=history, final_loss=history[-1]["loss"], steps=steps)


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
            logits, y = _class_last(model(x), y)
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
