r"""The claim of the Feedback Transformer (arXiv:2002.09402).

`state_tracking`: a Transformer's layer l at step t sees only the states of layers < l at earlier steps, so a
shallow one can update a state only a bounded number of times; the feedback memory carries the top of step t - 1 to
the bottom of step t, so a shallow feedback model updates its state at every step (Sec. 1, 3; Sec. 4.1's algorithmic
tasks and code execution, where it tracks variables that a standard Transformer loses). The task here is the running
parity of a bit sequence, the simplest state to track: y_t = (b_1 + ... + b_t) mod 2 at every position.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ...core.sequence import SequenceTransformer, token_accuracy
from ...engine.claims import ClaimResult, claim
from ...engine.train import train
from .feedback import FeedbackTransformer


def running_parity(n: int, length: int, seed: int) -> TensorDataset:
    """n sequences of `length` random bits as tokens 1, 2 (0 is padding in the course) and their running parity:
    x (n, length) in {1, 2}, y (n, length) with y_t = (sum_{s <= t} (x_s - 1)) mod 2."""
    bits = torch.randint(0, 2, (n, length), generator=torch.Generator().manual_seed(seed))
    return TensorDataset(bits + 1, bits.cumsum(1) % 2)


def build(kind: str, cfg):
    """The two models of equal width and depth: feedback (shared K/V, memory span) or a standard causal one."""
    common = dict(dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, dim_head=cfg.dim_head, max_len=cfg.length)
    if kind == "feedback":
        return FeedbackTransformer(3, 2, span=cfg.span, **common)
    return SequenceTransformer(3, 2, causal=True, **common)


def evaluate(model, data: TensorDataset) -> dict:
    """Per-token accuracy and the accuracy at the last position (the parity of the whole sequence), percent."""
    x, y = data.tensors
    model.eval()
    with torch.no_grad():
        last = float((model(x)[:, -1].argmax(-1) == y[:, -1]).float().mean()) * 100
    return {"last_accuracy": last, "token_accuracy": token_accuracy(model, data)["accuracy"]}


def fit(kind: str, cfg, data: dict, lr: float, seed: int, progress: bool) -> dict:
    torch.manual_seed(seed)
    model = build(kind, cfg)
    history = train(model, data["train"], steps=cfg.steps, batch_size=cfg.batch_size, lr=lr, seed=seed,
                    warmup_steps=cfg.steps // 10, progress=progress, desc=f"{kind} lr {lr:g}").history
    return {"lr": lr, "seed": seed, "params": sum(p.numel() for p in model.parameters()),
            "loss": [h["loss"] for h in history], "valid": evaluate(model, data["valid"]),
            "test": evaluate(model, data["test"])}


MODELS = ("feedback", "transformer")


@claim(
    paper="feedback_transformer",
    statement=("On a state-tracking task a shallow Feedback Transformer succeeds where a standard Transformer of the "
               "same width and depth fails (Sec. 1, 3 and the algorithmic tasks of Sec. 4.1): the feedback memory "
               "lets every step update a state that the standard model can only recompute with a bounded depth."),
    criterion=("running parity of 24 bits, 2 layers of width 32 each, the same steps and batches; each model's "
               "learning rate chosen from its sweep on a validation set (seed 0); test accuracy at the last "
               "position (the parity of all 24 bits): the feedback model >= 95% on every one of 3 seeds, the "
               "standard Transformer <= 70% on average over the seeds (chance 50%)"),
    quick=dict(length=8, n_train=256, n_valid=64, n_test=64, steps=6, batch_size=32,
               lrs=dict(feedback=(1e-2,), transformer=(3e-3,)), dim=16, depth=2, heads=2, dim_head=8, span=1, seeds=1),
    full=dict(length=24, n_train=8000, n_valid=500, n_test=1000, steps=500, batch_size=64,
              lrs=dict(feedback=(3e-3, 1e-2), transformer=(1e-3, 3e-3, 1e-2)), dim=32, depth=2, heads=4,
              dim_head=8, span=1, seeds=3),
)
def state_tracking(cfg, ctx) -> ClaimResult:
    data = {split: running_parity(getattr(cfg, f"n_{split}"), cfg.length, seed)
            for split, seed in (("train", 0), ("valid", 1), ("test", 2))}
    sweeps, runs = {}, {}
    for kind in MODELS:                                   # its own learning rate: the best validation accuracy
        sweeps[kind] = [fit(kind, cfg, data, lr, 0, ctx.progress) for lr in cfg.lrs[kind]]
        best = max(sweeps[kind], key=lambda r: (r["valid"]["last_accuracy"], r["valid"]["token_accuracy"]))
        runs[kind] = [best] + [fit(kind, cfg, data, best["lr"], seed, ctx.progress) for seed in range(1, cfg.seeds)]
    last = {k: [r["test"]["last_accuracy"] for r in rs] for k, rs in runs.items()}
    passed = min(last["feedback"]) >= 95 and float(np.mean(last["transformer"])) <= 70
    metrics = {"last_accuracy": last, "mean_last_accuracy": {k: float(np.mean(v)) for k, v in last.items()},
               "token_accuracy": {k: [r["test"]["token_accuracy"] for r in rs] for k, rs in runs.items()},
               "lr": {k: rs[0]["lr"] for k, rs in runs.items()},
               "params": {k: rs[0]["params"] for k, rs in runs.items()},
               "sweep": {k: [{"lr": r["lr"], "valid": r["valid"]} for r in s] for k, s in sweeps.items()}}
    curves = {k: [r["loss"] for r in rs] for k, rs in runs.items()}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot(curves, runs, cfg),
                       notes=f"dim {cfg.dim}, {cfg.depth} layers, {cfg.heads} heads of {cfg.dim_head}; feedback "
                             f"memory span {cfg.span}; {cfg.steps} steps of {cfg.batch_size} sequences")


def plot(curves: dict, runs: dict, cfg):
    """Left: training loss per step, every seed. Right: test accuracy at the last position per seed."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = {"feedback": "tab:blue", "transformer": "tab:orange"}
    for kind, losses in curves.items():
        for i, loss in enumerate(losses):
            ax1.plot(np.convolve(loss, np.ones(10) / 10, mode="valid"), color=colors[kind], alpha=0.8,
                     label=f"{kind} (lr {runs[kind][0]['lr']:g})" if i == 0 else None)
    ax1.set(xlabel="step", ylabel="training cross-entropy (10-step mean)", title=f"running parity, N = {cfg.length}")
    ax1.axhline(np.log(2), color="gray", ls=":", label="chance (ln 2)")
    ax1.legend(fontsize=8)
    for j, kind in enumerate(MODELS):
        values = [r["test"]["last_accuracy"] for r in runs[kind]]
        ax2.bar(np.arange(len(values)) + 0.4 * j, values, 0.4, color=colors[kind], label=kind)
    ax2.axhline(95, color="tab:blue", ls="--", lw=0.8)
    ax2.axhline(70, color="tab:orange", ls="--", lw=0.8)
    ax2.set(xlabel="seed", ylabel="test accuracy at the last position (%)", ylim=(0, 100),
            title="parity of all bits", xticks=np.arange(len(runs["feedback"])) + 0.2,
            xticklabels=[str(i) for i in range(len(runs["feedback"]))])
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig
