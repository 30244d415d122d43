"""Training a character LM on CPython's docs for the mixture-of-experts claims (Switch Transformer, GShard).

    curve = train_lm(cfg, data, model, lr=3e-3, seed=0)     # {"steps", "val_loss", "dropped", "load", "params"}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...core import MoE
from ...engine.schedules import warmup_schedule
from ...engine.train import build_optimizer
from ...engine.trainer import Trainer, class_last, supervised_step


def lm_loss(net, batch):
    """Next-character cross-entropy, plus the fraction of tokens the Switch layers dropped (mean over layers)."""
    x, y = batch
    loss = F.cross_entropy(*class_last(net(x), y))
    stats = [m.routing_stats["dropped"] for m in net.modules() if isinstance(m, MoE)]
    return loss, ({"dropped": float(torch.stack(stats).mean())} if stats else {})


def train_lm(cfg, data, model, *, lr: float, seed: int, progress: bool = False) -> dict:
    """Train the causal LM `model` on `data` (TextData) with AdamW (`cfg.warmup` warm-up steps, then `cfg.schedule`:
    "constant", or "cosine" down to 0.1 lr) for `cfg.steps` steps
    of `cfg.batch` windows of `cfg.block` characters. Returns the validation loss on `cfg.val_windows` fixed windows
    every `cfg.eval_every` steps, the fraction of dropped tokens at every step and the tokens per expert of the
    first mixture-of-experts layer on the validation windows at the end (its `routing_stats`)."""
    val = data.windows("val", cfg.block)
    chosen = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:cfg.val_windows]
    val_x, val_y = map(torch.stack, zip(*[val[int(i)] for i in chosen]))

    def evaluate(trainer):
        return {"val_loss": float(F.cross_entropy(*class_last(trainer.models["model"](val_x), val_y)))}

    opt = build_optimizer(model, "adamw", lr=lr)
    sched = warmup_schedule(opt, steps=cfg.steps, warmup_steps=cfg.warmup, schedule=cfg.schedule, min_ratio=0.1)
    result = Trainer(model, opt, sched, steps=cfg.steps, data=data.windows("train", cfg.block), batch_size=cfg.batch,
                     step=supervised_step(lm_loss), seed=seed, evaluate=evaluate, eval_every=cfg.eval_every,
                     progress=progress).fit()
    moe = [m for m in model.modules() if isinstance(m, MoE)]
    return {"steps": [e["step"] for e in result.evaluations], "val_loss": [e["val_loss"] for e in result.evaluations],
            "dropped": [h["dropped"] for h in result.history if "dropped" in h],
            "load": moe[0].routing_stats["load"].tolist() if moe else None,
            "params": sum(p.numel() for p in model.parameters())}


def steps_to_reach(steps: list[int], losses: list[float], target: float) -> float | None:
    """The first step at which the loss curve reaches `target`, linearly interpolated between evaluations
    (None if it never does)."""
    for i, loss in enumerate(losses):
        if loss <= target:
            if i == 0:
                return float(steps[0])
            s0, s1, l0, l1 = steps[i - 1], steps[i], losses[i - 1], losses[i]
            return float(s0 + (s1 - s0) * (l0 - target) / (l0 - l1))
    return None
