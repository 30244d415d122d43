"""The claims of BigBird (Zaheer et al. 2020, arXiv:2007.14062).

1. `linear_memory`: the block-sparse attention's memory grows linearly in the sequence length (Sec. 1-2, App. D).
2. `graph_diameter`: random + window + global attention graphs have far shorter paths than a sliding window
   alone (Sec. 2, the graph-theoretic argument behind Theorems 1-2).
3. `task_accuracy`: on a generated long-range task the sparse attention is about as accurate as full attention
   (Sec. 4; the Long Range Arena comparison of Tay et al. 2021).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...core import FullAttention, SequenceTransformer, token_accuracy
from ...engine.bench import bench_module, loglog_slope, method_slopes, plot_cost_panels
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from .attention import BigBirdAttention
from .bench import bench_kwargs
from .graph import PATTERNS, attention_graph, path_lengths

# ----------------------------------------------------------------------------- claim 1: linear memory


class _Self(nn.Module):
    """`attn(x)` as self-attention; with `math=True` inside SDPA's math kernel, which forms the n x n scores."""

    def __init__(self, attn: nn.Module, math: bool = False):
        super().__init__()
        self.attn, self.math = attn, math

    def forward(self, x: Tensor) -> Tensor:
        if self.math:
            with sdpa_kernel(SDPBackend.MATH):
                return self.attn(x)
        return self.attn(x)


@claim(
    paper="bigbird",
    statement=("BigBird reduces the quadratic memory of full attention to linear in the sequence length n "
               "(Sec. 1-2, App. D): forward+backward peak memory of one attention layer (dim 512, 8 heads of 64, "
               "blocks of 64, w = 3, g = 2, r = 3 blocks) grows like n."),
    criterion="log-log least-squares slope of BigBird's peak memory against n, from n = 1024 up, <= 1.15",
    quick=dict(sizes=(256, 512), dense_sizes=(256,), slope_from=256, dim=64, heads=2, dim_head=32, repeats=1,
               warmup=0, seeds=1),
    full=dict(sizes=(1024, 2048, 4096, 8192, 16384), dense_sizes=(1024, 2048, 4096), slope_from=1024, dim=512,
              heads=8, dim_head=64, repeats=3, warmup=1, seeds=1),
)
def linear_memory(cfg, ctx) -> ClaimResult:
    def inputs(n):
        return (torch.randn(1, n, cfg.dim, requires_grad=True),)

    def bigbird(n):
        return _Self(BigBirdAttention(cfg.dim, cfg.heads, cfg.dim_head, **bench_kwargs(n)))

    def full(math):
        return lambda n: _Self(FullAttention(cfg.dim, cfg.heads, cfg.dim_head), math=math)

    kw = dict(device=ctx.device, repeats=cfg.repeats, warmup=cfg.warmup)
    methods = {"BigBird": bench_module(bigbird, inputs, cfg.sizes, name="BigBird", **kw),
               "full (n x n scores)": bench_module(full(True), inputs, cfg.dense_sizes, name="full (n x n scores)",
                                                   **kw),
               "full (SDPA flash kernel)": bench_module(full(False), inputs, cfg.dense_sizes,
                                                        name="full (SDPA flash kernel)", **kw)}
    curves = {m: {"n": [r["size"] for r in rows if "peak_mb" in r],
                  "peak_mb": [r["peak_mb"] for r in rows if "peak_mb" in r],
                  "time_ms": [r["time_ms"] for r in rows if "time_ms" in r]} for m, rows in methods.items()}
    rows = [r for rs in methods.values() for r in rs]
    fitted = method_slopes(rows, min_size=cfg.slope_from, missing_ok=True)    # None: fewer than two sizes
    slopes = {m: {"memory": s["peak_mb"], "time": s["time_ms"]} for m, s in fitted.items() if None not in s.values()}
    errors = {m: {r["size"]: r["error"] for r in rows if "error" in r} for m, rows in methods.items()}
    passed = "BigBird" in slopes and slopes["BigBird"]["memory"] <= 1.15
    return ClaimResult(metrics={"slopes": slopes, "curves": curves, "errors": errors}, passed=passed,
                       figure=plot_cost_panels(rows, fitted, xlabel="sequence length n", title=(
                           "One attention layer, forward+backward (batch 1): BigBird against full attention")),
                       notes=f"batch 1, dim {cfg.dim}, {cfg.heads} heads of {cfg.dim_head}; memory: peak live tensor "
                             f"bytes of one forward+backward beyond inputs and weights; time: median of {cfg.repeats}")


# ----------------------------------------------------------------------------- claim 2: graph diameter


@claim(
    paper="bigbird",
    statement=("Sec. 2: with a sliding window alone (W) two tokens n / w blocks apart are connected only through "
               "as many layers, while r random blocks per query (R + W) give shortest paths that grow only "
               "logarithmically in n, and the global blocks of BigBird (R + W + G) connect every pair in two hops: "
               "the BigBird attention graph has a far smaller diameter than window-only at the same n."),
    criterion=("block graphs with w = 3, r = 3 for n = 1024 ... 131072 tokens in blocks of 64 (16 ... 2048 blocks), "
               "mean over seeds: at every n, diameter(BigBird) <= diameter(W) / 5 and mean shortest path(R + W) <= "
               "mean shortest path(W) / 2; at the largest n, mean shortest path(R + W) <= mean shortest path(W) / 20"),
    quick=dict(num_blocks=(16, 32, 64), block_size=64, seeds=1),
    full=dict(num_blocks=(16, 32, 64, 128, 256, 512, 1024, 2048), block_size=64, seeds=5),
)
def graph_diameter(cfg, ctx) -> ClaimResult:
    stats = {p: {nb: {"diameter": [], "mean_path": []} for nb in cfg.num_blocks} for p in PATTERNS}
    for seed, pattern, nb in ctx.grid(cfg.seeds, PATTERNS, cfg.num_blocks):
        g = torch.Generator().manual_seed(seed)
        for key, value in path_lengths(attention_graph(nb, pattern, generator=g)).items():
            stats[pattern][nb][key].append(value)
    mean = {p: {key: {nb: float(np.mean(s[nb][key])) for nb in cfg.num_blocks} for key in ("diameter", "mean_path")}
            for p, s in stats.items()}
    largest = cfg.num_blocks[-1]
    passed = (all(mean["BigBird"]["diameter"][nb] <= mean["W"]["diameter"][nb] / 5 for nb in cfg.num_blocks)
              and all(mean["R+W"]["mean_path"][nb] <= mean["W"]["mean_path"][nb] / 2 for nb in cfg.num_blocks)
              and mean["R+W"]["mean_path"][largest] <= mean["W"]["mean_path"][largest] / 20)
    log_blocks = np.log2(cfg.num_blocks)
    growth = {p: {"mean_path_per_doubling": float(np.polyfit(log_blocks, list(m["mean_path"].values()), 1)[0]),
                  "mean_path_loglog_slope": loglog_slope(cfg.num_blocks, list(m["mean_path"].values()))}
              for p, m in mean.items()}
    metrics = {"tokens": {nb: nb * cfg.block_size for nb in cfg.num_blocks}, "mean": mean, "growth": growth,
               "per_seed": {p: {nb: s[nb] for nb in cfg.num_blocks} for p, s in stats.items()}}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_paths(mean, cfg.block_size),
                       notes="hops between blocks; tokens of different blocks are as many hops apart as their blocks, "
                             "tokens of one block one hop")


def plot_paths(mean: dict, block_size: int):
    """Mean shortest path and diameter of the three attention graphs against n (tokens), log-log."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "mean_path", "mean shortest path (hops)"),
                           (axes[1], "diameter", "diameter (hops)")):
        for pattern, m in mean.items():
            n = [nb * block_size for nb in m[key]]
            ax.plot(n, list(m[key].values()), marker="o", label={"W": "window only (W)", "R+W": "random + window",
                                                                  "BigBird": "BigBird (R + W + G)"}[pattern])
        ax.set(xscale="log", yscale="log", xlabel=f"sequence length n (blocks of {block_size})", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Attention graphs (w = 3, r = 3 blocks): hops needed to connect two tokens")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 3: task accuracy


@claim(
    paper="bigbird",
    statement=("BigBird's sparse attention is about as accurate as full attention (Sec. 4; Long Range Arena, Tay et "
               "al. 2021, Table 1: ListOps 36.05% vs 36.37%): the same small Transformer trained on a generated "
               "long-range task reaches nearly the test accuracy of its full-attention twin."),
    criterion=("ListOps, length 128, mean test accuracy over 2 seeds: BigBird >= full attention - 3 points, and full "
               "attention >= the majority class + 10 points (the task is learned, so the comparison means something)"),
    quick=dict(task="listops", length=64, block_size=4, n_train=64, n_test=32, steps=4, batch_size=8, lr=2e-3,
               seeds=1),
    full=dict(task="listops", length=128, block_size=4, n_train=7200, n_test=500, steps=450, batch_size=16, lr=2e-3,
              seeds=2),
)
def task_accuracy(cfg, ctx) -> ClaimResult:
    task = ctx.dataset(cfg.task, length=cfg.length, n_train=cfg.n_train, n_test=cfg.n_test, seed=0)
    attentions = {"full": ("full", {}),
                  "BigBird": ("bigbird", dict(block_size=cfg.block_size, num_random_blocks=3))}
    accuracy = {name: [] for name in attentions}
    histories = {name: [] for name in attentions}
    for seed, name in ctx.grid(cfg.seeds, attentions):
        ctx.seed(seed)                                           # twins start from the same embeddings
        attention, kw = attentions[name]
        model = SequenceTransformer(task.vocab_size, task.num_classes, max_len=cfg.length, attention=attention,
                                    attention_kwargs=kw, per_token=task.per_token)
        fit = ctx.fit_and_eval(model, task, steps=cfg.steps, batch_size=cfg.batch_size, seed=seed, lr=cfg.lr,
                               warmup_steps=cfg.steps // 10, eval_train=False, desc=f"{name} seed {seed}")
        accuracy[name].append(token_accuracy(model, task.test)["accuracy"])
        histories[name].append([h["loss"] for h in fit.history])
    mean = mean_over_seeds(accuracy)
    labels = task.test.tensors[1]
    majority = 100.0 * float((labels == labels.mode().values).float().mean())
    passed = mean["BigBird"] >= mean["full"] - 3.0 and mean["full"] >= majority + 10.0
    metrics = {"accuracy": mean, "accuracy_per_seed": accuracy, "majority_class": majority,
               "density": (2 + 3 + 3) * cfg.block_size / cfg.length}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_training(histories, mean, majority, cfg))


def plot_training(histories: dict, accuracy: dict, majority: float, cfg):
    """Training loss (running mean, mean over seeds) and test accuracy of full attention and BigBird."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw=dict(width_ratios=(2, 1)))
    window = max(1, cfg.steps // 20)
    for name, runs in histories.items():
        loss = np.mean(runs, axis=0)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        axes[0].plot(np.arange(window, len(loss) + 1), smooth, label=name)
    axes[0].set(xlabel="step", ylabel="training loss (running mean)", title=f"{cfg.task}, length {cfg.length}")
    axes[0].grid(alpha=0.3)
    axes[0].legend()
    names = list(accuracy)
    axes[1].bar(names, [accuracy[n] for n in names], color=["tab:blue", "tab:orange"])
    axes[1].axhline(majority, color="gray", linestyle="--", label=f"majority class {majority:.1f}%")
    for i, name in enumerate(names):
        axes[1].text(i, accuracy[name], f"{accuracy[name]:.1f}%", ha="center", va="bottom")
    axes[1].set(ylabel="test accuracy (%)", title=f"mean of {cfg.seeds} seed(s)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
