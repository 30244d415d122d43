r"""The claims of GShard (arXiv:2006.16668), on character-level language modelling of CPython's docs.

1. `balanced_load`: with the auxiliary loss (Alg. 1, l_aux) and random routing, top-2 gating spreads the tokens
   evenly over the experts, so that with capacity 2S / E almost no token overflows (Sec. 2.2).
2. `top2_vs_top1`: at equal expert capacity, top-2 gating (a token's output mixes its two best experts) reaches a
   lower validation loss than top-1 gating (Sec. 2.2; Switch Transformer Sec. 2.1 trades this for speed).
3. `parallel_equals_single`: the experts sharded over 2 gloo processes, tokens exchanged by all-to-all, give the
   outputs and gradients of one process holding every expert (Sec. 3.2).
"""

from __future__ import annotations

import numpy as np

from ...core import MoE
from ...engine.claims import ClaimResult, claim
from ..switch_transformer.training import train_lm
from .models import gshard_lm
from .parallel import expert_parallel_errors

LM = dict(dim=64, depth=4, heads=4, block=64, batch=32, warmup=30, val_windows=128, group_size=512, experts=8,
          schedule="cosine")
QUICK_LM = dict(LM, dim=16, depth=2, heads=2, block=16, batch=4, warmup=2, val_windows=4, eval_every=2, group_size=32,
                experts=4)


def _model(cfg, data, k: int = 2, balance_weight: float = 0.01, capacity_factor: float = 2.0):
    return gshard_lm(data.tokenizer.vocab_size, cfg.experts, k=k, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                     dim_head=cfg.dim // cfg.heads, max_len=cfg.block, capacity_factor=capacity_factor,
                     group_size=cfg.group_size, balance_weight=balance_weight)


def imbalance(load: list[int]) -> float:
    """max over experts of the tokens sent to an expert / the mean (1 = perfectly balanced, E = one expert takes
    everything)."""
    load = np.asarray(load, dtype=float)
    return float(load.max() / load.mean())


def _moe_loads(model) -> list[list[int]]:
    """The first choices per expert of each MoE layer in the latest forward (the final validation windows)."""
    return [m.routing_stats["load"].tolist() for m in model.modules() if isinstance(m, MoE)]


# ----------------------------------------------------------------------------- claim 1: balanced load

MAX_DROPPED, MIN_DROP_RATIO = 0.01, 5.0
CRITERION_BALANCED = (f"top-2, capacity factor 2 (2S / E), tokens dropped over the second half of training: with l_aux "
                      f"<= {MAX_DROPPED:.0%} (mean over seeds), and without l_aux >= {MIN_DROP_RATIO:g} x as many in "
                      f"every seed (the loss, not the data, balances the load); the experts' loads on validation "
                      f"windows (busiest / mean) are reported")


@claim(
    paper="gshard",
    statement=("With the auxiliary loss l_aux and random routing (Alg. 1), top-2 gating keeps the experts' loads "
               "even, so that at capacity 2S / E almost no token overflows (Sec. 2.2)."),
    criterion=CRITERION_BALANCED,
    quick=dict(QUICK_LM, steps=6, lr=3e-3, seeds=1),
    full=dict(LM, steps=300, eval_every=100, lr=3e-3, seeds=3),
)
def balanced_load(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("pydoc")
    results = {}
    for alpha in (0.01, 0.0):
        results[alpha] = []
        for seed in range(cfg.seeds):
            model = _model(cfg, data, balance_weight=alpha)
            run = train_lm(cfg, data, model, lr=cfg.lr, seed=seed, progress=ctx.progress)
            loads = _moe_loads(model)
            results[alpha].append({"imbalance": float(np.mean([imbalance(x) for x in loads])), "loads": loads,
                                   "dropped": float(np.mean(run["dropped"][cfg.steps // 2:])),
                                   "val_loss": run["val_loss"][-1]})
    mean = {a: {key: float(np.mean([r[key] for r in rs])) for key in ("imbalance", "dropped", "val_loss")}
            for a, rs in results.items()}
    passed = (mean[0.01]["dropped"] <= MAX_DROPPED
              and all(b["dropped"] >= MIN_DROP_RATIO * a["dropped"] for a, b in zip(results[0.01], results[0.0])))
    metrics = {"mean": {f"alpha={a}": m for a, m in mean.items()},
               "per_seed": {f"alpha={a}": rs for a, rs in results.items()}}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_loads(results, cfg))


def plot_loads(results, cfg):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (alpha, runs) in zip(axes, results.items()):
        for layer, load in enumerate(runs[0]["loads"]):
            load = np.asarray(load, dtype=float)
            ax.bar(np.arange(len(load)) + 0.4 * layer - 0.2, load / load.mean(), 0.4, label=f"MoE layer {layer + 1}")
        ax.axhline(1.0, color="gray", ls="--", lw=0.8)
        ax.set(xlabel="expert", title=f"l_aux weight {alpha}: imbalance {np.mean([r['imbalance'] for r in runs]):.2f}"
               f", dropped {100 * np.mean([r['dropped'] for r in runs]):.1f}%")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("first choices / mean (validation, seed 0)")
    fig.suptitle(f"top-2, {cfg.experts} experts, capacity 2S/E, groups of {cfg.group_size} tokens")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 2: top-2 vs top-1

MIN_GAP = 0.01
CRITERION_TOP2 = (f"final validation loss, equal capacity factor 2.0, each gating at its own learning rate (the best "
                  f"final loss of a sweep on seed 0): top-2 below top-1 in every seed and by >= {MIN_GAP} nats/char "
                  f"on the mean over seeds")


@claim(
    paper="gshard",
    statement=("At equal expert capacity (2S / E per group), top-2 gating, which mixes each token's two best experts "
               "(Alg. 1), reaches a lower validation loss than top-1 gating at the same number of steps (Sec. 2.2)."),
    criterion=CRITERION_TOP2,
    quick=dict(QUICK_LM, steps=6, lrs=(3e-3,), seeds=1),
    full=dict(LM, steps=400, eval_every=50, lrs=(3e-3, 1e-2, 2e-2), seeds=3),
)
def top2_vs_top1(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("pydoc")
    sweep = {k: {lr: train_lm(cfg, data, _model(cfg, data, k=k), lr=lr, seed=0, progress=ctx.progress)
                 for lr in cfg.lrs} for k in (2, 1)}                   # each gating's own learning rate
    lr = {k: min(by_lr, key=lambda rate: by_lr[rate]["val_loss"][-1]) for k, by_lr in sweep.items()}
    runs = {k: [sweep[k][lr[k]]] + [train_lm(cfg, data, _model(cfg, data, k=k), lr=lr[k], seed=seed,
                                             progress=ctx.progress) for seed in range(1, cfg.seeds)]
            for k in (2, 1)}
    finals = {k: [r["val_loss"][-1] for r in rs] for k, rs in runs.items()}
    gap = float(np.mean(finals[1]) - np.mean(finals[2]))
    passed = gap >= MIN_GAP and all(a < b for a, b in zip(finals[2], finals[1]))
    steps = runs[2][0]["steps"]
    mean = {k: np.mean([r["val_loss"] for r in rs], 0).tolist() for k, rs in runs.items()}
    metrics = {"final_val_loss": {f"top{k}": v for k, v in finals.items()}, "gap_top1_minus_top2": gap,
               "lr": {f"top{k}": v for k, v in lr.items()},
               "lr_sweep": {f"top{k}": {str(rate): r["val_loss"][-1] for rate, r in by_lr.items()}
                            for k, by_lr in sweep.items()},
               "steps": steps, "mean_val_loss": {f"top{k}": v for k, v in mean.items()}}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_top2(steps, mean, lr, cfg))


def plot_top2(steps, mean, lr, cfg):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k in (1, 2):
        ax.plot(steps, mean[k], label=f"top-{k}, lr {lr[k]:g} (final {mean[k][-1]:.3f})")
    ax.set(xlabel="training step", ylabel="validation loss (nats/char)", ylim=(None, min(3.5, max(mean[1]))),
           title=f"capacity factor 2.0, {cfg.experts} experts, mean of {cfg.seeds} seeds")
    ax.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 3: parallel = single


MAX_RELATIVE_ERROR = 1e-5


@claim(
    paper="gshard",
    statement=("Expert parallelism changes nothing but where the experts run: 2 processes, each holding half the "
               "experts and routing its own group of tokens through all-to-all exchanges, give the outputs and the "
               "gradients (inputs, router, experts) of one process holding every expert (Sec. 3.2)."),
    criterion=(f"float32, every seed, top-1 and top-2: max |2 processes - 1 process| / max |1 process| <= "
               f"{MAX_RELATIVE_ERROR} for the outputs, the input gradients, the router's (summed over processes) "
               f"and the experts' gradients, with tokens dropped at capacity factor 1.0"),
    quick=dict(num_experts=4, dim=8, tokens=16, seeds=1),
    full=dict(num_experts=8, dim=64, tokens=512, seeds=3),
)
def parallel_equals_single(cfg, ctx) -> ClaimResult:
    errors = {f"top{k}": [expert_parallel_errors(seed, k, num_experts=cfg.num_experts, dim=cfg.dim,
                                                 tokens=cfg.tokens) for seed in range(cfg.seeds)] for k in (1, 2)}
    keys = ("outputs", "input_grads", "router_grad", "expert_grads")
    worst = {key: max(e[key] for runs in errors.values() for e in runs) for key in keys}
    passed = max(worst.values()) <= MAX_RELATIVE_ERROR and all(e["dropped"] > 0 for r in errors.values() for e in r)
    return ClaimResult(metrics={"worst_relative_error": worst, "per_seed": errors}, passed=passed,
                       figure=plot_errors(worst))


def plot_errors(worst):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(list(worst), [max(v, 1e-12) for v in worst.values()])
    ax.axhline(MAX_RELATIVE_ERROR, color="tab:red", ls="--", label="criterion")
    ax.set(yscale="log", ylabel="max relative error (worst seed, rank, k)", title="2 gloo processes vs 1 process")
    ax.legend()
    fig.tight_layout()
    return fig
