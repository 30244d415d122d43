"""EvoNorm's claims at laptop scale (Liu et al. 2020, arXiv:2004.02967, Fig. 1, Sec. 3 and 5).

1. `s0_batch_independence`: EvoNorm-S0 with 2 images per worker is as accurate as BN-ReLU with 64, BN-ReLU with 2
   is not (Fig. 1 right: ResNet-50 on ImageNet, the batch over 8 workers going from 1024 to 32). We keep the global
   batch (64) and so the optimization fixed and split it over 1 or 32 emulated workers (`PerWorker`), which isolates
   what the claim is about: the statistics each layer computes from the images it sees; each setting gets its own
   learning rate from a sweep.
2. `b0_matches_bn`: at a large batch, EvoNorm-B0 is at least as accurate as BN-ReLU (Sec. 5: B0 is ahead of
   BN-ReLU on ResNet-50, MobileNetV2 and EfficientNet-B0 on ImageNet).
3. `search_beats_random`: the evolutionary search with its rejections finds a layer better than a typical random
   layer of the search space (Sec. 3; the paper also compares evolution with random search).

All three train the same small network, `norm_act_resnet(layer, depth=8, width=8)` (a CIFAR ResNet-8 in which
every BN-ReLU is the layer under test), on a Fashion-MNIST subset with images average-pooled to 14 x 14 to fit the
CPU budget. For a given seed every layer starts from the same convolution weights and sees the same batches.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ...engine.claims import ClaimResult, claim, mean_over_seeds
from ...engine.runtime import num_threads
from ...engine.train import evaluate, train
from .evolution import ProxyTask, graph_norm_act, regularized_evolution
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


# ----------------------------------------------------------------------------- 3. the search beats random layers


@claim(
    paper="evonorm",
    statement=("The evolutionary search with the paper's rejection rules finds a layer whose proxy accuracy beats "
               "that of the median random layer of the search space that passes the same rejections (Sec. 3, "
               "and the paper's comparison of evolution with random search)."),
    criterion=("test accuracy on held-out images: the search's best layer (chosen on the validation split), "
               "retrained from scratch with `retrain_seeds` new seeds (mean), > the median test accuracy of the "
               "valid random layers of the initial population"),
    quick=dict(population_size=2, cycles=1, tournament_size=2, num_nodes=6, n_train=64, n_val=32, n_test=32,
               pool=2, depth=8, width=8, steps=2, quality_steps=1, quality_threshold=0.0, batch_size=16, lr=0.1,
               retrain_seeds=1, seeds=1),
    full=dict(population_size=6, cycles=12, tournament_size=3, num_nodes=6, n_train=2000, n_val=1000, n_test=2000,
              pool=2, depth=8, width=8, steps=120, quality_steps=30, quality_threshold=20.0, batch_size=32, lr=0.1,
              retrain_seeds=3, seeds=1),
)
def search_beats_random(cfg, ctx) -> ClaimResult:
    train_set, val_set, test_set, num_classes, in_chans = splits(ctx, cfg)
    task = ProxyTask(train_set, val_set, test_set, num_classes, in_chans, depth=cfg.depth, width=cfg.width,
                     steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, quality_steps=cfg.quality_steps,
                     quality_threshold=cfg.quality_threshold, device=ctx.device)
    searches, per_seed = [], []
    for seed in range(cfg.seeds):
        search = regularized_evolution(task, population_size=cfg.population_size, cycles=cfg.cycles,
                                       tournament_size=cfg.tournament_size, num_nodes=cfg.num_nodes, seed=seed)
        references = {"winner": graph_norm_act(search.best.graph), "bn_relu": "bn_relu",
                      "evonorm_b0": graph_norm_act(EVONORM_B0), "evonorm_s0": graph_norm_act(EVONORM_S0)}
        retrained = {name: [task.accuracy(task.fit(layer, cfg.steps, 1000 * (seed + 1) + r), "test")
                            for r in range(cfg.retrain_seeds)] for name, layer in references.items()}
        random_test = [c.test_accuracy for c in search.random_candidates]
        searches.append(search)
        per_seed.append({
            "winner": str(search.best.graph), "winner_origin": search.best.origin,
            "winner_val_accuracy": search.best.val_accuracy,
            "winner_retrained_test_accuracy": float(np.mean(retrained["winner"])),
            "random_median_test_accuracy": float(np.median(random_test)),
            "random_test_accuracies": random_test,
            "retrained_test_accuracy": {k: float(np.mean(v)) for k, v in retrained.items()},
            "retrained_test_accuracy_per_seed": retrained,
            "statuses": dict(sorted({s: sum(c.status == s for c in search.history)
                                     for s in {c.status for c in search.history}}.items())),
            "lightweight_rejections": dict(search.lightweight_rejections),
            "history": [c.to_dict() for c in search.history],
        })
    winner = float(np.mean([s["winner_retrained_test_accuracy"] for s in per_seed]))
    median = float(np.mean([s["random_median_test_accuracy"] for s in per_seed]))
    metrics = {"winner_retrained_test_accuracy": winner, "random_median_test_accuracy": median,
               "margin": winner - median, "searches": per_seed}
    return ClaimResult(metrics=metrics, passed=winner > median, figure=plot_search(searches[0], per_seed[0]),
                       notes=f"{len(searches[0].history)} candidates trained per search, "
                             f"ResNet-{cfg.depth} width {cfg.width}, {cfg.steps} steps at batch {cfg.batch_size}")


def plot_search(search, summary: dict):
    """The search's progress (each candidate's validation accuracy, rejections at the bottom, the best so far) and
    the test accuracies of the random layers, the winner and the reference layers, all trained alike."""
    import matplotlib.pyplot as plt

    fig, (ax_run, ax_cmp) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    best, best_so_far = 0.0, []
    for c in search.history:
        best = max(best, c.val_accuracy) if c.valid else best
        best_so_far.append(best)
    steps = range(len(search.history))
    for origin, color in (("random", "tab:gray"), ("mutation", "tab:blue")):
        kept = [(i, c.val_accuracy) for i, c in enumerate(search.history) if c.valid and c.origin == origin]
        ax_run.plot([i for i, _ in kept], [a for _, a in kept], "o", color=color,
                    label=f"valid {origin} layer" if origin == "random" else "valid mutated layer")
    rejected = [i for i, c in enumerate(search.history) if not c.valid]
    counts = ", ".join(f"{n} {s}" for s, n in summary["statuses"].items() if s != "valid")
    ax_run.plot(rejected, [0] * len(rejected), "|", color="tab:red", markersize=10, alpha=0.5,
                label=f"rejected ({counts})")
    ax_run.plot(steps, best_so_far, "-", color="tab:blue", alpha=0.5, label="best so far")
    n_random = sum(c.origin == "random" for c in search.history)
    ax_run.axvspan(-0.5, n_random - 0.5, color="tab:gray", alpha=0.08)
    ax_run.set_xlabel(f"candidate, in order of evaluation (first {n_random}: random initial population)")
    ax_run.set_ylabel("validation accuracy (%)")
    ax_run.set_title(f"search; winner: {summary['winner']}", fontsize=9)
    ax_run.legend(fontsize=8, loc="center right")
    ax_run.grid(alpha=0.3)

    rand = summary["random_test_accuracies"]
    ax_cmp.plot(np.zeros(len(rand)), rand, "o", color="tab:gray", alpha=0.6)
    ax_cmp.plot([-0.3, 0.3], [np.median(rand)] * 2, "k-", linewidth=2)
    names = ["winner", "bn_relu", "evonorm_b0", "evonorm_s0"]
    values = [summary["retrained_test_accuracy_per_seed"][name] for name in names]
    for i, (name, v) in enumerate(zip(names, values), start=1):
        ax_cmp.plot([i - 0.3, i + 0.3], [np.mean(v)] * 2, "-", linewidth=2,
                    color="tab:blue" if name == "winner" else "tab:olive")
        ax_cmp.plot([i] * len(v), v, "k.")
    low = min(min(rand), *(min(v) for v in values))
    ax_cmp.set_ylim(low - 3, max(max(rand), *(max(v) for v in values)) + 2)
    ax_cmp.set_xticks(range(len(names) + 1), ["random\nlayers", "search\nwinner", "BN-ReLU", "B0", "S0"])
    ax_cmp.set_ylabel("test accuracy (%)")
    ax_cmp.set_title("held-out test accuracy (lines: median / mean over seeds)", fontsize=10)
    ax_cmp.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
