"""The Trainer: the one training loop of the project.

    Trainer(model, optimizer, scheduler, data=ds, batch_size=64, steps=500).fit()      # supervised

A paper never writes its own loop; it gives the Trainer a step, hooks or an evaluation:

- named models, optimizers and schedulers (`models={"G": g, "D": d}`; a lone object is named
  `model`, `optimizer`, `scheduler`), checkpointed together, atomically, and resumed bit for bit on CPU;
- a step `step(trainer, batches) -> {name: float}` (default: `supervised_step()`, cross-entropy of
  one model on one stream) that calls `trainer.backward(loss, optimizer="D")` for each update;
- data streams `data={"labeled": ds1, "unlabeled": ds2}` with their own batch sizes; the batch of
  a stream at a step is a pure function of (seed, stream, step) (see `streams`);
- hooks (see `hooks`): the NaN guard, gradient-norm logging and clipping, EMA, anything else;
- auxiliary losses: a module that declares `self.aux_loss = None` in `__init__` and sets it to a
  scalar tensor in `forward` (a mixture-of-experts balance loss) needs no plumbing: the next
  `trainer.backward` adds `aux_weight` x the sum of every model's aux losses to its loss, logs the
  sum as `aux_loss` and clears them (the latest forward of a module counts);
- an evaluation `evaluate(trainer) -> {name: float}` after the last step and, with `eval_every`, at
  step 0 and every `eval_every` steps; under `torch.no_grad()`, the modules' train/eval modes restored;
- a tqdm bar, JSON lines (`log_path`), DDP under `torchrun`, autocast on CUDA (`amp`), `compile`;
- expert parallelism under `torchrun`: parameters tagged `expert_parallel` (the experts of a
  `core.MoE(exchange=engine.distributed)`, different on every process) are left out of DDP, and their
  gradients, which sum every process's loss, are divided by the world size: the gradient of the mean
  loss, as DDP's average is for the others (no `grad_clip` or checkpoints for such models yet).
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_checkpoint, resumable_checkpoint, save_checkpoint
from .hooks import GradNorm, NanGuard, parameters_of
from .runtime import process_device, seed_everything
from .streams import Stream

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CHECKPOINT_NAME = "last"            # the Trainer keeps its checkpoint in <checkpoint_dir>/last


@dataclass
class TrainResult:
    history: list[dict]             # one entry per step: step, the step's metrics, lr (+ grad_norm, aux_loss, ...)
    final_loss: float | None        # the last entry's `loss`, if the step reports one
    steps: int
    evaluations: list[dict] | None = None   # one entry per evaluation: step + the evaluation's metrics


# ----------------------------------------------------------------------------- the default step


def class_last(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, ..., V) logits against (B, ...) targets become (N, V) against (N,); others pass unchanged."""
    if logits.dim() > 2 and logits.shape[:-1] == y.shape:
        return logits.flatten(0, -2), y.flatten()
    return logits, y


def cross_entropy_loss(model: nn.Module, batch) -> torch.Tensor:
    """The default loss: cross-entropy of `model(x)` against `y` (per token for (B, N, V) logits)."""
    x, y = batch
    return F.cross_entropy(*class_last(model(x), y))


def supervised_step(loss_fn=None, *, model: str | None = None, stream: str | None = None,
                    optimizer: str | None = None):
    """The default step: `loss_fn(net, batch) -> loss` or `(loss, {name: float})` (default: cross-entropy)
    on the batch of `stream`, one update of `optimizer`. Names default to the trainer's only one; `net`
    is the model as wrapped for training (DDP, compile)."""
    loss_fn = loss_fn or cross_entropy_loss

    def step(trainer: Trainer, batches: dict) -> dict:
        out = loss_fn(trainer.nets[trainer.only("models", model)], batches[trainer.only("streams", stream)])
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        return {"loss": trainer.backward(loss, optimizer), **metrics}

    return step


# ----------------------------------------------------------------------------- progress and logs


class _Recorder:
    """The progress bar and the JSON-lines log of one run; only rank 0 shows and writes."""

    def __init__(self, *, steps: int, start: int, log_path, progress: bool, desc: str | None, main: bool):
        self.bar = tqdm(total=steps, initial=start, desc=desc, disable=not (progress and main), dynamic_ncols=True)
        self.log = None
        if log_path is not None and main:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            self.log = open(log_path, "a" if start > 0 else "w", buffering=1)

    def record(self, entry: dict, samples_per_s: float) -> None:
        self.bar.update(1)
        shown = entry.get("loss", next((v for k, v in entry.items() if k != "step"), None))
        self.bar.set_postfix(loss=f"{shown:.4f}", samples_s=f"{samples_per_s:.0f}", refresh=False)
        self.write({**entry, "samples_per_s": round(samples_per_s, 1)})

    def write(self, line: dict) -> None:
        if self.log is not None:
            self.log.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self.bar.close()
        if self.log is not None:
            self.log.close()


# ----------------------------------------------------------------------------- the Trainer


def _named(obj, default: str, kind: str) -> dict:
    """A `{name: obj}` dict from a dict, a lone object (named `default`) or None."""
    named = {} if obj is None else dict(obj) if isinstance(obj, dict) else {default: obj}
    for name in named:
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
            raise ValueError(f"{kind} names use letters, digits, '_' and '-', got {name!r}")
    return named


def amp_dtype(amp, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: None off CUDA or when amp is False; True means bf16 where supported, else fp16."""
    if amp not in (False, True, "bf16", "fp16"):
        raise ValueError(f"amp must be False, True, 'bf16' or 'fp16', got {amp!r}")
    if not amp or device.type != "cuda":
        return None
    if amp is True:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AMP_DTYPES[amp]


class Trainer:
    """Train named models with named optimizers for `steps` steps (see the module's docstring).

    - `models`, `optimizers`, `schedulers`: a lone object or `{name: object}`; schedulers step once
      per training step. The optimizers are built by the caller over the models' parameters.
    - `data`: a dataset (the stream `train`) or `{name: dataset}`; `batch_size`: an int for every
      stream or `{name: int}`, per process under DDP. No data: the step gets `{}` (noise-driven steps).
    - `step(trainer, batches) -> {name: float}`: one training step; `batches` is `{stream: batch}`.
    - `hooks`: run after the built-in NaN guard; `grad_clip` appends `GradNorm(grad_clip)`.
    - `aux_weight`: the weight of the modules' auxiliary losses.
    - `evaluate(trainer) -> {name: float}`: after the last step, and at steps 0, `eval_every`, 2 `eval_every`,
      ... when `eval_every` > 0; the results go to `trainer.evaluations` and the JSON log.
    - `checkpoint_dir`: a checkpoint every `checkpoint_every` steps (0: only at the end) in
      `<checkpoint_dir>/last`; `fit(resume=True)` continues from it.
    - `seed`: `fit` seeds Python, NumPy and torch with it, and the streams draw their batches with it.
    - `device`, `amp`, `compile`: see `engine.train.train`. Under `torchrun` every model with trainable
      parameters is wrapped in DDP (`trainer.nets`); only rank 0 shows progress and writes.
    """

    def __init__(self, models, optimizers, schedulers=None, *, steps: int, data=None, batch_size=None, step=None,
                 hooks=(), grad_clip: float | None = None, aux_weight: float = 1.0, evaluate=None,
                 eval_every: int = 0, seed: int = 0, device="cpu", amp=False, compile: bool = False,
                 log_path=None, checkpoint_dir=None, checkpoint_every: int = 0, progress: bool = True,
                 desc: str | None = None):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if checkpoint_every < 0 or eval_every < 0:
            raise ValueError(f"checkpoint_every and eval_every must be >= 0, got {checkpoint_every} and {eval_every}")
        self.models = _named(models, "model", "model")
        self.optimizers = _named(optimizers, "optimizer", "optimizer")
        self.schedulers = _named(schedulers, "scheduler", "scheduler")
        if not self.models or not self.optimizers:
            raise ValueError("a Trainer needs at least one model and one optimizer")
        self.steps, self.seed, self.aux_weight = steps, seed, aux_weight
        self.device = process_device(device)
        self.world, self.rank, self.main = distributed.world_size(), distributed.rank(), distributed.is_main_process()
        self.amp_dtype = amp_dtype(amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.compile = compile
        for model in self.models.values():
            model.to(self.device).train()
        self.streams = self._streams(data, batch_size)
        self.step_fn = step or supervised_step()
        self.hooks = [NanGuard(), *hooks, *([GradNorm(grad_clip)] if grad_clip is not None else [])]
        self.evaluate_fn, self.eval_every = evaluate, eval_every
        self.log_path, self.progress, self.desc = log_path, progress, desc
        self.checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.aux_modules = [m for model in self.models.values() for m in model.modules() if hasattr(m, "aux_loss")]
        self.nets = dict(self.models)
        self.step, self.history, self.evaluations, self._logged = 0, [], [], {}

    def _streams(self, data, batch_size) -> dict[str, Stream]:
        data = _named(data, "train", "stream")
        if data and batch_size is None:
            raise ValueError("batch_size is required with data (an int, or {stream: int})")
        sizes = batch_size if isinstance(batch_size, dict) else {name: batch_size for name in data}
        if set(sizes) != set(data):
            raise ValueError(f"batch_size names {sorted(sizes)} must match the data streams {sorted(data)}")
        return {name: Stream(name, ds, sizes[name], self.seed, self.world) for name, ds in data.items()}

    def only(self, kind: str, name: str | None = None) -> str:
        """`name`, or the name of the only entry of `kind` ("models", "optimizers", "streams")."""
        names = list(getattr(self, kind))
        if name is None and len(names) == 1:
            return names[0]
        if name is None or name not in names:
            raise ValueError(f"{kind}: expected one of {names or '(none)'}" + (f", got {name!r}" if name else
                             f"; name one (the trainer has {len(names)})"))
        return name

    # ------------------------------------------------------------------------- inside a step

    def log(self, metrics: dict, optimizer: str | None = None) -> None:
        """Add `metrics` to this step's history entry; with several optimizers, names get `/<optimizer>`."""
        suffix = f"/{optimizer}" if optimizer is not None and len(self.optimizers) > 1 else ""
        self._logged.update({f"{k}{suffix}": float(v) for k, v in metrics.items()})

    def collect_aux_losses(self) -> torch.Tensor | None:
        """The sum of the aux losses the modules set since the last call (None if none did); clears them."""
        losses = [m.aux_loss for m in self.aux_modules if m.aux_loss is not None]
        for m in self.aux_modules:
            m.aux_loss = None
        return sum(losses) if losses else None

    def backward(self, loss: torch.Tensor, optimizer: str | None = None, *, retain_graph: bool = False) -> float:
        """One update of `optimizer` (default: the only one) from `loss`: add the modules' aux losses, run the
        `on_loss` hooks (NaN guard), zero the gradients, backpropagate, run `after_backward` (clipping),
        step, run `after_step`. Returns the loss (aux included), averaged over processes."""
        name = self.only("optimizers", optimizer)
        opt = self.optimizers[name]
        aux = self.collect_aux_losses()
        if aux is not None:
            self.log({"aux_loss": aux.detach()}, optimizer=name)
            loss = loss + self.aux_weight * aux
        value = float(distributed.all_reduce_mean(loss.detach().float()))
        for hook in self.hooks:
            hook.on_loss(self, name, value)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=False) if self.amp_dtype is not None else nullcontext():
            self.scaler.scale(loss).backward(retain_graph=retain_graph)
        self.scaler.unscale_(opt)
        for p in parameters_of(opt):
            if getattr(p, "expert_parallel", False) and p.grad is not None:
                p.grad.div_(self.world)                             # summed over every process's loss: the mean
        for hook in self.hooks:
            hook.after_backward(self, name)
        self.scaler.step(opt)
        self.scaler.update()
        for hook in self.hooks:
            hook.after_step(self, name)
        return value

    # ------------------------------------------------------------------------- the loop

    def fit(self, resume: bool = False) -> TrainResult:
        """Run the steps left (all of them, or those after the checkpoint when `resume`)."""
        if resume and self.checkpoint is None:
            raise ValueError("resume=True needs a checkpoint_dir to resume from")
        seed_everything(self.seed)
        for hook in self.hooks:
            hook.on_fit_start(self)
        if resume:
            self._resume()
        self.nets = {name: self._wrap(model) for name, model in self.models.items()}
        start = self.step
        rec = _Recorder(steps=self.steps, start=start, log_path=self.log_path, progress=self.progress,
                        desc=self.desc, main=self.main)
        try:
            if start == 0 and self.evaluate_fn is not None and self.eval_every:
                self._evaluate(rec)
            while self.step < self.steps:
                self._train_step(rec)
                if self.evaluate_fn is not None and (self.step == self.steps or
                                                     self.eval_every and self.step % self.eval_every == 0):
                    self._evaluate(rec)
                if self.checkpoint is not None and self.checkpoint_every and self.step % self.checkpoint_every == 0 \
                        and self.step < self.steps:
                    self.save()
        finally:
            rec.close()
        if self.checkpoint is not None and start < self.steps:
            self.save()
        return TrainResult(history=self.history, final_loss=self.history[-1].get("loss"), steps=self.steps,
                           evaluations=self.evaluations)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.world > 1 and any(p.requires_grad for p in model.parameters()):
            ids = [self.device.index] if self.device.type == "cuda" else None
            sharded = [n for n, p in model.named_parameters() if getattr(p, "expert_parallel", False)]
            if sharded and (self.checkpoint is not None or any(getattr(h, "max_norm", None) for h in self.hooks)):
                raise ValueError("expert-parallel parameters (different on every process) cannot be checkpointed "
                                 "by rank 0 alone or clipped by a per-process norm yet: drop checkpoint_dir and "
                                 "grad_clip")
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, sharded)
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.compile else model

    def _train_step(self, rec: _Recorder) -> None:
        t0 = time.perf_counter()
        batches = {name: s.batch(self.step, self.rank, self.device) for name, s in self.streams.items()}
        lrs = {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}
        self._logged = {}
        self.collect_aux_losses()                                   # drop what an evaluation's forward left
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with autocast:
            metrics = self.step_fn(self, batches)
        for scheduler in self.schedulers.values():
            scheduler.step()
        self.step += 1
        for hook in self.hooks:
            hook.on_step_end(self)
        lr = {"lr": lrs.popitem()[1]} if len(lrs) == 1 else {f"lr/{name}": v for name, v in lrs.items()}
        entry = {"step": self.step, **{k: float(v) for k, v in metrics.items()}, **lr, **self._logged}
        self.history.append(entry)
        samples = sum(s.batch_size for s in self.streams.values()) * self.world
        rec.record(entry, samples / (time.perf_counter() - t0))

    def _evaluate(self, rec: _Recorder) -> None:
        modes = [(m, m.training) for model in self.models.values() for m in model.modules()]
        try:
            with torch.no_grad():
                metrics = {k: float(v) for k, v in self.evaluate_fn(self).items()}
        finally:
            for m, training in modes:
                m.training = training
        self.evaluations.append({"step": self.step, **metrics})
        rec.write({"step": self.step, "eval": metrics})
        for hook in self.hooks:
            hook.on_evaluate(self, metrics)

    # ------------------------------------------------------------------------- checkpoints

    def _states(self) -> dict:
        states = {f"hook{i}": s for i, hook in enumerate(self.hooks) if (s := hook.state_dict())}
        if hasattr(self.step_fn, "state_dict"):
            states["step"] = self.step_fn.state_dict()
        return states

    def save(self) -> None:
        """Checkpoint everything (rank 0 writes; every rank waits for it)."""
        if self.main:
            save_checkpoint(self.checkpoint, models=self.models, optimizers=self.optimizers,
                            schedulers=self.schedulers, states=self._states(), step=self.step,
                            extra={"history": self.history, "evaluations": self.evaluations,
                                   "grad_scaler": self.scaler.state_dict()})
        distributed.barrier()

    def _resume(self) -> None:
        # no checkpoint raises: a resumed run never restarts at 0 over a folder it cannot read (and overwrites it)
        meta = load_checkpoint(resumable_checkpoint(self.checkpoint), models=self.models, optimizers=self.optimizers,
                               schedulers=self.schedulers, map_location=self.device)
        self.step, self.history = meta["step"], meta["extra"].get("history", [])
        self.evaluations = meta["extra"].get("evaluations", [])
        self.scaler.load_state_dict(meta["extra"].get("grad_scaler", self.scaler.state_dict()))
        for i, hook in enumerate(self.hooks):
            if f"hook{i}" in meta["states"]:
                hook.load_state_dict(meta["states"][f"hook{i}"])
        if "step" in meta["states"]:
            self.step_fn.load_state_dict(meta["states"]["step"])
