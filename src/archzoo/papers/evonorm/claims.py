"""EvoNorm's claims at laptop scale (Liu et al. 2020, arXiv:2004.02967, Fig. 1, Sec. 3 and 5).

1. `s0_batch_independence`: EvoNorm-S0 with 2 images per worker is as accurate as BN-ReLU with 64, BN-ReLU with 2
   is not (Fig. 1 right: ResNet-50 on ImageNet, the batch over 8 workers going from 1024 to 32). We keep the global
   batch (64) and so the optimization fixed and split it over 1 or 32 emulated workers (`PerWorker`), which isolates
   what the claim is about: the statistics each layer computes from the images it sees; each setting gets its own
   learning rate from a sweep.
2. `b0_matches_bn`: at a large batch, EvoNorm-B0 is at least as accurate as BN-ReLU (Sec. 5: B0 is ahead of
   BN-ReLU on ResNet-50, MobileNetV2 and EfficientNet-B0 on ImageNet).
3. `search_beats_random`: with the same rejections, proxy task and budget of candidates, evolution finds a better
   layer than random search (Sec. 3 and the paper's comparison of the two), over several search seeds.

All three train the same small network, `norm_act_resnet(layer, depth=8, width=8)` (a CIFAR ResNet-8 in which
every BN-ReLU is the layer under test), on a Fashion-MNIST subset with images average-pooled to 14 x 14 to fit the
CPU budget. For a given seed every layer starts from the same convolution weights and sees the same batches.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ...engine.claims import ClaimResult, claim, mean_over_seeds
from ...engine.runtime import num_threads
from ...engine.train import evaluate, train
from .evolution import ProxyTask, graph_norm_act, random_search, regularized_evolution
from .models import NORM_ACT, norm_act_resnet
from .search_space import EVONORM_B0, EVONORM_S0

LABELS = {"bn_relu": "BN-ReLU", "evonorm_b0": "EvoNorm-B0", "evonorm_s0": "EvoNorm-S0"}


def splits(ctx, cfg) -> tuple[TensorDataset, TensorDataset, TensorDataset, int, int]:
    """Fashion-MNIST (digits if absent): `n_train` training images, the next `n_val` as a validation set (disjoint),
    the first `n_test` test images; images average-pooled by `cfg.pool` (28 -> 14 with pool 2)."""
    data = ctx.dataset("fashion-mnist", fallback="digits")
    x, y = data.train.tensors
    pool = cfg.pool if x.shape[-1] >= 2 * cfg.pool else 1                 # digits are 8 x 8: keep them
    x = F.avg_pool2d(x, pool)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train_idx, val_idx = perm[:cfg.n_train], perm[cfg.n_train:cfg.n_train + cfg.n_val]
    x_test, y_test = (t[:cfg.n_test] for t in data.test.tensors)
    return (TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[val_idx], y[val_idx]),
            TensorDataset(F.avg_pool2d(x_test, pool), y_test), data.num_classes, data.in_chans)


def fit(ctx, cfg, layer, train_set, num_classes, in_chans, *, batch_size: int, steps: int, lr: float, seed: int,
        desc: str) -> tuple[nn.Module, list[float]]:
    """Train `norm_act_resnet(layer)` with SGD; return the model and its per-step training losses."""
    ctx.seed(seed)                                                         # same initial convolutions for all layers
    model = norm_act_resnet(layer, cfg.depth, num_classes, in_chans, width=cfg.width)
    result = train(model, train_set, steps=steps, batch_size=batch_size, optimizer="sgd", lr=lr, momentum=0.9,
                   weight_decay=cfg.weight_decay, warmup_steps=max(1, round(cfg.warmup * steps)), schedule="cosine",
                   seed=seed, device=ctx.device, progress=ctx.progress, desc=desc)
    return model, [h["loss"] for h in result.history]


def fit_error(ctx, cfg, layer, train_set, test_set, num_classes, in_chans, **kw) -> tuple[float, list[float]]:
    """`fit`, then (test error in eval mode, per-step training losses)."""
    model, losses = fit(ctx, cfg, layer, train_set, num_classes, in_chans, **kw)
    return evaluate(model, test_set, device=ctx.device)["error"], losses


# ----------------------------------------------------------------------------- 1. S0 is batch-independent


class PerWorker(nn.Module):
    """Data-parallel training without synchronised statistics, emulated on one device: in training the layer
    normalizes each chunk of `batch` samples on its own, as each of the paper's workers does with its share of the
    global batch (Fig. 1 right: 8 workers); at inference it sees the whole batch (BN then uses running statistics)."""

    def __init__(self, layer: nn.Module, batch: int):
        super().__init__()
        self.layer, self.batch = layer, batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:                   # (B, C, H, W)
        if not self.training or x.shape[0] <= self.batch:
            return self.layer(x)
        return torch.cat([self.layer(chunk) for chunk in x.split(self.batch)])   # one chunk per worker


@claim(
    paper="evonorm",
    statement=("EvoNorm-S0 with 2 images per worker is as accurate as BN-ReLU with 64, while BN-ReLU with 2 images "
               "per worker is not (Fig. 1 right; the small-batch results of Sec. 5)."),
    criterion=("global batch 64 split over 64 / b workers that each normalize their own b images; each setting "
               "(BN-ReLU b=64, BN-ReLU b=2, S0 b=2) gets the learning rate of {0.03, 0.1, 0.3} with the lowest mean "
               "validation error; at it, mean test error over seeds: S0(2) <= BN-ReLU(64) + 1.5 points and "
               "BN-ReLU(2) >= S0(2) + 2 points"),
    quick=dict(per_worker=(8, 2), steps=2, batch_size=16, lrs=(0.1,), n_train=64, n_val=32, n_test=64, pool=2,
               depth=8, width=8, warmup=0.05, weight_decay=5e-4, seeds=1),
    full=dict(per_worker=(64, 2), steps=600, batch_size=64, lrs=(0.03, 0.1, 0.3), n_train=4096, n_val=2000,
              n_test=2000, pool=2, depth=8, width=8, warmup=0.05, weight_decay=5e-4, seeds=2),
)
def s0_batch_independence(cfg, ctx) -> ClaimResult:
    train_set, val_set, test_set, num_classes, in_chans = splits(ctx, cfg)
    big, small = max(cfg.per_worker), min(cfg.per_worker)
    settings = {f"bn_relu@{big}": ("bn_relu", big), f"bn_relu@{small}": ("bn_relu", small),
                f"evonorm_s0@{small}": ("evonorm_s0", small)}  # S0 at `big` computes the same numbers (tested)
    lrs = [float(lr) for lr in cfg.lrs]
    val = {k: {lr: [] for lr in lrs} for k in settings}
    test = {k: {lr: [] for lr in lrs} for k in settings}
    with num_threads(1):                                                   # a ResNet-8 of width 8: 1 thread is fastest
        for seed, key, lr in ctx.grid(cfg.seeds, settings, lrs):
            layer, b = settings[key]
            model, _ = fit(ctx, cfg, lambda c, layer=layer, b=b: PerWorker(NORM_ACT[layer](c), b), train_set,
                           num_classes, in_chans, batch_size=cfg.batch_size, steps=cfg.steps, lr=lr, seed=seed,
                           desc=f"{LABELS[layer]} {b} per worker lr {lr} seed {seed}")
            val[key][lr].append(evaluate(model, val_set, device=ctx.device)["error"])
            test[key][lr].append(evaluate(model, test_set, device=ctx.device)["error"])
    best_lr = {k: min(lrs, key=lambda lr, k=k: np.mean(val[k][lr])) for k in settings}
    error = {k: float(np.mean(test[k][best_lr[k]])) for k in settings}
    s0, bn_big, bn_small = error[f"evonorm_s0@{small}"], error[f"bn_relu@{big}"], error[f"bn_relu@{small}"]
    passed = bool(s0 <= bn_big + 1.5 and bn_small >= s0 + 2.0)
    metrics = {"error": error, "best_lr": best_lr,
               "s0_minus_bn_large": s0 - bn_big, "bn_small_minus_s0": bn_small - s0,
               "bn_small_minus_bn_large": bn_small - bn_big,
               "test_error": {k: {str(lr): v for lr, v in by_lr.items()} for k, by_lr in test.items()},
               "val_error": {k: {str(lr): v for lr, v in by_lr.items()} for k, by_lr in val.items()},
               "workers": {b: cfg.batch_size // b for b in cfg.per_worker}}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_error_vs_batch(test, val, best_lr, cfg),
                       notes=f"{cfg.steps} steps at global batch {cfg.batch_size} on {cfg.n_train} images, lr chosen "
                             f"on {len(val_set)} validation images, test error on {len(test_set)} images, "
                             f"ResNet-{cfg.depth} width {cfg.width}")


def plot_error_vs_batch(test: dict, val: dict, best_lr: dict, cfg):
    """Fig. 1 right redrawn: test error (each setting at its own learning rate) against the images each worker
    normalizes; beside it the learning-rate sweep (validation error) that chose those rates."""
    import matplotlib.pyplot as plt

    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(10, 4))
    big, small = max(cfg.per_worker), min(cfg.per_worker)
    colors = {"bn_relu": "tab:blue", "evonorm_s0": "tab:red"}
    bn = [test[f"bn_relu@{b}"][best_lr[f"bn_relu@{b}"]] for b in (big, small)]       # (2, seeds)
    ax.plot([0, 1], np.mean(bn, axis=1), "o-", color=colors["bn_relu"], lw=2, label=LABELS["bn_relu"])
    s0 = test[f"evonorm_s0@{small}"][best_lr[f"evonorm_s0@{small}"]]
    ax.plot([1], [np.mean(s0)], "s", color=colors["evonorm_s0"], markersize=9, label=f"{LABELS['evonorm_s0']} "
            f"(at {big} per worker it computes the same numbers)")
    for x, runs in ((0, bn[0]), (1, bn[1]), (1, s0)):
        ax.plot([x] * len(runs), runs, ".", color="gray", alpha=0.6)
    workers = {b: cfg.batch_size // b for b in (big, small)}
    ax.set_xticks([0, 1], [f"{b}\n({w} worker{'s' * (w > 1)})" for b, w in workers.items()])
    ax.set_xlabel(f"images per worker (global batch {cfg.batch_size})")
    ax.set_ylabel("test error (%), each at its own lr")
    ax.set_title(f"Fashion-MNIST, ResNet-{cfg.depth}, {cfg.steps} steps (cf. Fig. 1 right)")
    ax.legend(fontsize=8)
    for key, by_lr in val.items():
        layer = key.split("@")[0]
        per_worker = int(key.split("@")[1])
        ax_lr.plot(list(by_lr), [np.mean(v) for v in by_lr.values()], "o" if layer == "bn_relu" else "s",
                   color=colors[layer], ls="-" if per_worker == big or layer != "bn_relu" else "--",
                   label=f"{LABELS[layer]}, {per_worker} per worker")
    ax_lr.set_xscale("log")
    ax_lr.set_xlabel("learning rate")
    ax_lr.set_ylabel("validation error (%, mean over seeds)")
    ax_lr.set_title("learning-rate sweep")
    ax_lr.legend(fontsize=8)
    for a in (ax, ax_lr):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 2. B0 matches BN at a large batch


@claim(
    paper="evonorm",
    statement=("At a large batch EvoNorm-B0 matches or beats BN-ReLU (Sec. 5: ResNet-50, MobileNetV2 and "
               "EfficientNet-B0 on ImageNet, B0 ahead on each)."),
    criterion="mean test error over seeds at batch 64: EvoNorm-B0 <= BN-ReLU + 1 point",
    quick=dict(steps=2, batch_size=32, n_train=64, n_val=0, n_test=64, pool=2, depth=8, width=8, lr=0.1,
               warmup=0.1, weight_decay=5e-4, seeds=1),
    full=dict(steps=600, batch_size=64, n_train=8000, n_val=0, n_test=2000, pool=2, depth=8, width=8, lr=0.1,
              warmup=0.1, weight_decay=5e-4, seeds=3),
)
def b0_matches_bn(cfg, ctx) -> ClaimResult:
    train_set, _, test_set, num_classes, in_chans = splits(ctx, cfg)
    layers = ("bn_relu", "evonorm_b0")
    errors = {layer: [] for layer in layers}
    losses = {layer: [] for layer in layers}
    for seed, layer in ctx.grid(cfg.seeds, layers):
        error, loss = fit_error(ctx, cfg, layer, train_set, test_set, num_classes, in_chans,
                                batch_size=cfg.batch_size, steps=cfg.steps, lr=cfg.lr, seed=seed,
                                desc=f"{LABELS[layer]} seed {seed}")
        errors[layer].append(error)
        losses[layer].append(loss)
    mean = mean_over_seeds(errors)
    passed = mean["evonorm_b0"] <= mean["bn_relu"] + 1.0
    curves = {layer: np.mean(losses[layer], axis=0).tolist() for layer in layers}   # mean training loss per step
    metrics = {"error": mean, "error_per_seed": errors, "b0_minus_bn_relu": mean["evonorm_b0"] - mean["bn_relu"],
               "train_loss_curves": curves}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_b0_vs_bn(errors, curves),
                       notes=f"{cfg.steps} steps at batch {cfg.batch_size} on {cfg.n_train} images, test error on "
                             f"{len(test_set)} images, ResNet-{cfg.depth} width {cfg.width}")


def plot_b0_vs_bn(errors: dict, curves: dict):
    """Sec. 5's large-batch comparison as a figure: test error of BN-ReLU and EvoNorm-B0 (mean and seeds), and
    their training losses."""
    import matplotlib.pyplot as plt

    fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {"bn_relu": "tab:blue", "evonorm_b0": "tab:green"}
    for i, layer in enumerate(errors):
        ax_err.bar(i, np.mean(errors[layer]), color=colors[layer], alpha=0.6)
        ax_err.plot([i] * len(errors[layer]), errors[layer], "k.", markersize=8)
        window = max(1, len(curves[layer]) // 20)
        smooth = np.convolve(curves[layer], np.ones(window) / window, mode="valid")
        ax_loss.plot(np.arange(window, len(curves[layer]) + 1), smooth, color=colors[layer], label=LABELS[layer])
    ax_err.set_xticks(range(len(errors)), [LABELS[layer] for layer in errors])
    ax_err.set_ylabel("test error (%)")
    ax_err.set_title("batch 64: test error (bars: mean, dots: seeds)")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss (running mean)")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    for ax in (ax_err, ax_loss):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 3. evolution beats random search


@claim(
    paper="evonorm",
    statement=("With the same rejections, proxy task and budget of candidate layers, the evolutionary search finds a "
               "better layer than random search (Sec. 3 and the paper's comparison of evolution with random search)."),
    criterion=("per search seed, evolution (tournament selection with aging) and random search draw from the same "
               "random stream (so share their first candidates) and evaluate the same number of candidates (as "
               "many as the evolution run did); each one's best layer by validation accuracy is retrained from "
               "scratch with `retrain_seeds` new seeds (the same for both; a retraining that diverges counts at "
               "chance accuracy) and scored by its mean test accuracy; evolution minus random search >= 1.5 points "
               "on the mean over search seeds, and > 0 in a majority of the search seeds"),
    quick=dict(population_size=2, cycles=1, tournament_size=2, num_nodes=6, n_train=64, n_val=32, n_test=32,
               pool=2, depth=8, width=8, steps=2, quality_steps=1, quality_threshold=0.0, batch_size=16, lr=0.1,
               retrain_seeds=1, seeds=1),
    full=dict(population_size=4, cycles=40, tournament_size=2, num_nodes=6, n_train=2000, n_val=1000, n_test=2000,
              pool=2, depth=8, width=8, steps=120, quality_steps=30, quality_threshold=20.0, batch_size=32, lr=0.1,
              retrain_seeds=6, seeds=3),
)
def search_beats_random(cfg, ctx) -> ClaimResult:
    train_set, val_set, test_set, num_classes, in_chans = splits(ctx, cfg)
    task = ProxyTask(train_set, val_set, test_set, num_classes, in_chans, depth=cfg.depth, width=cfg.width,
                     steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, quality_steps=cfg.quality_steps,
                     quality_threshold=cfg.quality_threshold, device=ctx.device)
    retrained: dict[str, list[float]] = {}                                 # formula -> test accuracy per retraining

    def retrain(name: str, layer) -> list[float]:
        """Test accuracy of `layer` trained from scratch like a candidate, once per retraining seed (the same seeds
        for every layer); a run whose loss turns non-finite scores chance accuracy."""
        if name not in retrained:
            retrained[name] = []
            for r in range(cfg.retrain_seeds):
                try:
                    retrained[name].append(task.accuracy(task.fit(layer, cfg.steps, 10_000 + r), "test"))
                except FloatingPointError:
                    retrained[name].append(100.0 / num_classes)
        return retrained[name]

    with num_threads(1):                                                   # a ResNet-8 of width 8: 1 thread is fastest
        searches, per_seed = [], []
        for seed in range(cfg.seeds):
            cache: dict = {}                                               # the shared first candidates, trained once
            evo = regularized_evolution(task, population_size=cfg.population_size, cycles=cfg.cycles,
                                        tournament_size=cfg.tournament_size, num_nodes=cfg.num_nodes, seed=seed,
                                        cache=cache)
            rnd = random_search(task, budget=len(evo.history), num_nodes=cfg.num_nodes, seed=seed, cache=cache)
            searches.append({"evolution": evo, "random": rnd})
            record = {"budget": len(evo.history),
                      "shared_first_candidates": next((i for i, (a, b) in enumerate(zip(evo.history, rnd.history))
                                                       if str(a.graph) != str(b.graph)), len(evo.history))}
            for method, search in searches[-1].items():
                best = search.best
                acc = retrain(str(best.graph), graph_norm_act(best.graph))
                record[method] = {
                    "best": str(best.graph), "best_origin": best.origin, "best_val_accuracy": best.val_accuracy,
                    "retrained_test_accuracy": float(np.mean(acc)), "retrained_test_accuracy_per_seed": acc,
                    "valid_candidates": sum(c.valid for c in search.history),
                    "statuses": dict(sorted(Counter(c.status for c in search.history).items())),
                    "lightweight_rejections": dict(search.lightweight_rejections),
                    "history": [c.to_dict() for c in search.history]}
            record["evolution_minus_random"] = (record["evolution"]["retrained_test_accuracy"]
                                                - record["random"]["retrained_test_accuracy"])
            per_seed.append(record)
        references = {name: float(np.mean(retrain(name, layer))) for name, layer in
                      (("bn_relu", "bn_relu"), ("evonorm_b0", graph_norm_act(EVONORM_B0)),
                       ("evonorm_s0", graph_norm_act(EVONORM_S0)))}
    gaps = [s["evolution_minus_random"] for s in per_seed]
    evo_acc = float(np.mean([s["evolution"]["retrained_test_accuracy"] for s in per_seed]))
    rnd_acc = float(np.mean([s["random"]["retrained_test_accuracy"] for s in per_seed]))
    wins = sum(g > 0 for g in gaps)
    passed = bool(evo_acc - rnd_acc >= 1.5 and wins > len(gaps) / 2)
    metrics = {"evolution_retrained_test_accuracy": evo_acc, "random_retrained_test_accuracy": rnd_acc,
               "evolution_minus_random": evo_acc - rnd_acc, "evolution_minus_random_per_seed": gaps,
               "seeds_evolution_ahead": wins, "reference_retrained_test_accuracy": references, "searches": per_seed}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_search(searches, per_seed, references),
                       notes=f"budgets {[s['budget'] for s in per_seed]} candidates per search, "
                             f"ResNet-{cfg.depth} width {cfg.width}, {cfg.steps} steps at batch {cfg.batch_size}")


def plot_search(searches: list[dict], per_seed: list[dict], references: dict):
    """The paper's evolution-against-random-search figure redrawn: the best validation accuracy found so far
    against candidates evaluated, per search seed; and the retrained test accuracy of each search's best layer,
    beside the reference layers trained alike."""
    import matplotlib.pyplot as plt

    fig, (ax_run, ax_cmp) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    colors = {"evolution": "tab:blue", "random": "tab:gray"}
    for seed, pair in enumerate(searches):
        for method, search in pair.items():
            best, curve = None, []
            for c in search.history:
                if c.valid and (best is None or c.val_accuracy > best):
                    best = c.val_accuracy
                curve.append(np.nan if best is None else best)
            ax_run.plot(range(1, len(curve) + 1), curve, color=colors[method], ls=("-", "--", ":")[seed % 3],
                        label=f"{method}, seed {seed}")
        ax_run.axvline(per_seed[seed]["shared_first_candidates"] + 0.5, color="k", ls=("-", "--", ":")[seed % 3],
                       alpha=0.2)
    ax_run.set_xlabel("candidates evaluated (shared ones left of the grey lines)")
    ax_run.set_ylabel("best validation accuracy so far (%)")
    ax_run.set_title("search progress: evolution against random search, equal budgets", fontsize=10)
    ax_run.legend(fontsize=7, ncol=2)
    ax_run.grid(alpha=0.3)

    for i, method in enumerate(("evolution", "random")):
        values = [s[method]["retrained_test_accuracy"] for s in per_seed]
        ax_cmp.plot([i] * len(values), values, "o", color=colors[method], alpha=0.7)
        ax_cmp.plot([i - 0.3, i + 0.3], [np.mean(values)] * 2, "-", color=colors[method], linewidth=2)
    for seed in per_seed:
        ax_cmp.plot([0, 1], [seed["evolution"]["retrained_test_accuracy"], seed["random"]["retrained_test_accuracy"]],
                    "k-", alpha=0.2)
    for i, value in enumerate(references.values(), start=2):
        ax_cmp.plot([i - 0.3, i + 0.3], [value] * 2, "-", color="tab:olive", linewidth=2)
    ax_cmp.set_xticks(range(2 + len(references)), ["evolution's\nbest", "random\nsearch's best",
                                                   *(LABELS[name].removeprefix("EvoNorm-") for name in references)])
    ax_cmp.set_ylabel("retrained test accuracy (%, mean of retrainings)")
    ax_cmp.set_title("held-out test accuracy (dots: search seeds, lines: means)", fontsize=10)
    ax_cmp.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
