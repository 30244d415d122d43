"""EvoNorm's claims at laptop scale (Liu et al. 2020, arXiv:2004.02967, Fig. 1, Sec. 3 and 5).

1. `s0_batch_independence`: EvoNorm-S0 keeps its accuracy when each worker normalizes 2 images instead of 64,
   BN-ReLU does not (Fig. 1 right: ResNet-50 on ImageNet, the batch over 8 workers going from 1024 to 32). We keep
   the global batch (64) and so the optimization fixed and split it over 1 to 32 emulated workers (`PerWorker`),
   which isolates what the claim is about: the statistics each layer computes from the images it sees.
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


def fit_error(ctx, cfg, layer, train_set, test_set, num_classes, in_chans, *, batch_size: int, steps: int, lr: float,
              seed: int, desc: str) -> tuple[float, list[float]]:
    """Train `norm_act_resnet(layer)` with SGD and return (test error in eval mode, per-step training losses)."""
    ctx.seed(seed)                                                         # same initial convolutions for all layers
    model = norm_act_resnet(layer, cfg.depth, num_classes, in_chans, width=cfg.width)
    result = train(model, train_set, steps=steps, batch_size=batch_size, optimizer="sgd", lr=lr, momentum=0.9,
                   weight_decay=cfg.weight_decay, warmup_steps=max(1, round(cfg.warmup * steps)), schedule="cosine",
                   seed=seed, device=ctx.device, progress=ctx.progress, desc=desc)
    return evaluate(model, test_set, device=ctx.device)["error"], [h["loss"] for h in result.history]


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
    statement=("EvoNorm-S0 is batch-independent: its error when each worker normalizes 2 images is that of 64 "
               "images, while BN-ReLU degrades as the per-worker batch shrinks (Fig. 1 right; the small-batch "
               "results of Sec. 5)."),
    criterion=("mean test error over seeds, global batch 64 split over 64 / b workers that each normalize their "
               "own b images: |S0(b=2) - S0(b=64)| <= 2 points, and BN-ReLU(2) - BN-ReLU(64) > S0(2) - S0(64)"),
    quick=dict(per_worker=(8, 2), steps=2, batch_size=16, n_train=64, n_val=0, n_test=64, pool=2, depth=8, width=8,
               lr=0.1, warmup=0.05, weight_decay=5e-4, seeds=1),
    full=dict(per_worker=(64, 2), steps=200, batch_size=64, n_train=4096, n_val=0, n_test=2000, pool=2, depth=8,
              width=8, lr=0.1, warmup=0.05, weight_decay=5e-4, seeds=2),
)
def s0_batch_independence(cfg, ctx) -> ClaimResult:
    train_set, _, test_set, num_classes, in_chans = splits(ctx, cfg)
    layers = ("bn_relu", "evonorm_s0")
    errors = {layer: {b: [] for b in cfg.per_worker} for layer in layers}
    for seed, b, layer in ctx.grid(cfg.seeds, cfg.per_worker, layers):
        error, _ = fit_error(ctx, cfg, lambda c, layer=layer, b=b: PerWorker(NORM_ACT[layer](c), b), train_set,
                             test_set, num_classes, in_chans, batch_size=cfg.batch_size, steps=cfg.steps, lr=cfg.lr,
                             seed=seed, desc=f"{LABELS[layer]} {b} per worker seed {seed}")
        errors[layer][b].append(error)
    mean = {layer: mean_over_seeds(errors[layer]) for layer in layers}
    big, small = max(cfg.per_worker), min(cfg.per_worker)
    gaps = {layer: mean[layer][small] - mean[layer][big] for layer in layers}
    passed = abs(gaps["evonorm_s0"]) <= 2.0 and gaps["bn_relu"] > gaps["evonorm_s0"]
    metrics = {"error": mean, "error_per_seed": errors, "gap_small_minus_large": gaps,
               "workers": {b: cfg.batch_size // b for b in cfg.per_worker}}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_error_vs_batch(errors, cfg),
                       notes=f"{cfg.steps} steps at global batch {cfg.batch_size} on {cfg.n_train} images, test error "
                             f"on {len(test_set)} images, ResNet-{cfg.depth} width {cfg.width}")


def plot_error_vs_batch(errors: dict, cfg):
    """Fig. 1 right redrawn: test error against the images each worker normalizes, for BN-ReLU and EvoNorm-S0
    (mean over seeds, and each seed)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted(cfg.per_worker, reverse=True)
    for layer, color in (("bn_relu", "tab:blue"), ("evonorm_s0", "tab:red")):
        per_seed = np.array([errors[layer][b] for b in sizes])             # (batch sizes, seeds)
        ax.plot(range(len(sizes)), per_seed.mean(1), "o-", color=color, label=LABELS[layer], linewidth=2)
        for s in range(per_seed.shape[1]):
            ax.plot(range(len(sizes)), per_seed[:, s], ".", color=color, alpha=0.4)
    workers = {b: cfg.batch_size // b for b in sizes}
    ax.set_xticks(range(len(sizes)), [f"{b}\n({w} worker{'s' * (w > 1)})" for b, w in workers.items()])
    ax.set_xlabel(f"images per worker (global batch {cfg.batch_size})")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"Fashion-MNIST, ResNet-{cfg.depth}: error vs. per-worker batch (cf. Fig. 1 right)")
    ax.legend()
    ax.grid(alpha=0.3)
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
