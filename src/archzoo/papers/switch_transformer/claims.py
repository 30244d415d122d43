r"""The claims of Switch Transformer (arXiv:2101.03961), on character-level language modelling of CPython's docs.

1. `faster_than_dense`: at equal FLOPs per token, a Switch LM reaches the dense LM's final validation loss in
   fewer steps (Sec. 3, Fig. 1 right and Fig. 4: "Switch-Base 64 expert ... 7.5x speedup").
2. `balancing_cuts_dropped_tokens`: the load-balancing loss (Eq. 4) keeps the router from overloading a few
   experts, so that far fewer tokens overflow the capacity and are dropped (Sec. 2.2).
"""

from __future__ import annotations

import numpy as np

from ...engine.claims import ClaimResult, claim
from .models import switch_lm
from .training import steps_to_reach, train_lm

SPEEDUP = 1.25              # claim 1: dense steps to the target / Switch steps to the target
BALANCE_RATIO = 0.5         # claim 2: dropped fraction with the balancing loss / without it
CRITERION_FASTER = (f"mean over seeds: the Switch LM reaches the dense LM's final validation loss (dense at the best "
                    f"learning rate of a sweep) at least {SPEEDUP}x sooner (steps, interpolated between "
                    f"evaluations), and its final validation loss is below the dense one in every seed")
CRITERION_BALANCE = (f"fraction of tokens dropped over the second half of training, capacity factor 1.0: with the "
                     f"loss <= {BALANCE_RATIO} x without it (mean over seeds), and lower in every seed")




def _model(cfg, data, num_experts: int | None, balance_weight: float = 0.01):
    return switch_lm(data.tokenizer.vocab_size, num_experts, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                     dim_head=cfg.dim // cfg.heads, max_len=cfg.block, capacity_factor=cfg.capacity_factor,
                     balance_weight=balance_weight)


LM = dict(dim=64, depth=4, heads=4, block=64, batch=32, warmup=30, val_windows=128, capacity_factor=1.0,
          schedule="cosine")
QUICK_LM = dict(LM, dim=16, depth=2, heads=2, block=16, batch=4, warmup=2, val_windows=4, eval_every=2)


# ----------------------------------------------------------------------------- claim 1: faster than dense


@claim(
    paper="switch_transformer",
    statement=("At equal FLOPs per token, a Switch Transformer LM (16 experts in every other block, each as wide as "
               "the dense FFN, top-1) reaches the dense LM's final validation loss in fewer steps (Sec. 3, Fig. 1 "
               "right, Fig. 4)."),
    criterion=CRITERION_FASTER,
    quick=dict(QUICK_LM, steps=6, experts=4, dense_lrs=(3e-3,), switch_lr=3e-3, seeds=1),
    full=dict(LM, steps=800, batch=32, schedule="constant", capacity_factor=1.25, eval_every=50,
              experts=16, dense_lrs=(1e-2, 2e-2), switch_lr=1e-2, seeds=2),
)
def faster_than_dense(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("pydoc")
    sweep = {lr: train_lm(cfg, data, _model(cfg, data, None), lr=lr, seed=0, progress=ctx.progress)
             for lr in cfg.dense_lrs}                                  # the dense baseline's own learning rate
    dense_lr = min(sweep, key=lambda lr: sweep[lr]["val_loss"][-1])
    curves = {"dense": [sweep[dense_lr]], "switch": []}
    for seed in range(cfg.seeds):
        if seed:
            curves["dense"].append(train_lm(cfg, data, _model(cfg, data, None), lr=dense_lr, seed=seed,
                                            progress=ctx.progress))
        curves["switch"].append(train_lm(cfg, data, _model(cfg, data, cfg.experts), lr=cfg.switch_lr, seed=seed,
                                         progress=ctx.progress))
    steps = curves["dense"][0]["steps"]
    mean = {name: np.mean([c["val_loss"] for c in runs], 0).tolist() for name, runs in curves.items()}
    target = mean["dense"][-1]
    reach = {name: steps_to_reach(steps, mean[name], target) for name in mean}
    speedup = reach["dense"] / reach["switch"] if reach["switch"] else 0.0      # 0: Switch never reached it
    finals = {name: [c["val_loss"][-1] for c in runs] for name, runs in curves.items()}
    passed = speedup >= SPEEDUP and all(s < d for s, d in zip(finals["switch"], finals["dense"]))
    metrics = {"speedup": speedup, "steps_to_target": reach, "target_loss": target, "final_val_loss": finals,
               "dense_lr": dense_lr, "dense_lr_sweep": {lr: r["val_loss"][-1] for lr, r in sweep.items()},
               "params": {name: runs[0]["params"] for name, runs in curves.items()}, "steps": steps,
               "mean_val_loss": mean}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_curves(steps, mean, target, reach, cfg))


def plot_curves(steps, mean, target, reach, cfg):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, label in (("dense", "dense FFN"), ("switch", f"Switch, {cfg.experts} experts")):
        at = f"step {reach[name]:.0f}" if reach[name] is not None else "never"
        ax.plot(steps, mean[name], label=f"{label} (reaches the target: {at})")
    ax.axhline(target, color="gray", ls="--", lw=0.8, label="target: dense final loss")
    ax.set(xlabel="training step", ylabel="validation loss (nats/char)", ylim=(None, min(3.5, max(mean["dense"]))),
           title=f"pydoc characters, equal FLOPs per token, mean of {cfg.seeds} seeds")
    ax.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 2: balancing cuts drops


@claim(
    paper="switch_transformer",
    statement=("The load-balancing loss (Eq. 4, alpha = 0.01) keeps the router from overloading a few experts, so "
               "that at capacity factor 1.0 far fewer tokens overflow their expert and are dropped than without it "
               "(Sec. 2.2)."),
    criterion=CRITERION_BALANCE,
    quick=dict(QUICK_LM, steps=6, experts=4, lr=3e-3, seeds=1),
    full=dict(LM, steps=300, eval_every=50, experts=8, lr=3e-3, seeds=3),
)
def balancing_cuts_dropped_tokens(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("pydoc")
    runs = {alpha: [train_lm(cfg, data, _model(cfg, data, cfg.experts, alpha), lr=cfg.lr, seed=seed,
                             progress=ctx.progress) for seed in range(cfg.seeds)] for alpha in (0.01, 0.0)}
    half = cfg.steps // 2
    dropped = {alpha: [float(np.mean(r["dropped"][half:])) for r in rs] for alpha, rs in runs.items()}
    mean = {alpha: float(np.mean(d)) for alpha, d in dropped.items()}
    passed = mean[0.01] <= BALANCE_RATIO * mean[0.0] and all(a < b for a, b in zip(dropped[0.01], dropped[0.0]))
    metrics = {"dropped_second_half": {f"alpha={a}": d for a, d in dropped.items()},
               "mean_dropped": {f"alpha={a}": m for a, m in mean.items()},
               "val_loss": {f"alpha={a}": [r["val_loss"][-1] for r in rs] for a, rs in runs.items()},
               "load": {f"alpha={a}": [r["load"] for r in rs] for a, rs in runs.items()}}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_dropped(runs, cfg))


def plot_dropped(runs, cfg):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for alpha, rs in runs.items():
        curve = np.mean([r["dropped"] for r in rs], 0)
        smooth = np.convolve(curve, np.ones(10) / 10, mode="valid") if len(curve) >= 10 else curve
        ax1.plot(100 * smooth, label=f"alpha = {alpha}")
        load = np.sort(np.asarray(rs[0]["load"], dtype=float))[::-1]
        ax2.bar(np.arange(len(load)) + (0.2 if alpha else -0.2), load / load.sum(), 0.4, label=f"alpha = {alpha}")
    ax1.set(xlabel="training step", ylabel="tokens dropped (%)", title="capacity factor 1.0, mean over seeds")
    ax2.axhline(1 / cfg.experts, color="gray", ls="--", lw=0.8, label="uniform")
    ax2.set(xlabel="expert (sorted by load)", ylabel="fraction of first choices",
            title="first Switch layer, validation windows, seed 0")
    for ax in (ax1, ax2):
        ax.legend()
    fig.tight_layout()
    return fig
