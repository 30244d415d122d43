"""Longformer's claims (Beltagy et al. 2020, arXiv:2004.05150): memory linear in n (Fig. 1), and window + global
attention nearly matching full attention on a task that needs the whole document, where the window alone
falls short (Sec. 3.1 "Global Attention", Sec. 6)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from ...core import FullAttention, SequenceTransformer
from ...data.tasks import IGNORE_INDEX
from ...engine.bench import bench_module, method_slopes, plot_cost_panels
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from .attention import LongformerAttention
from .sliding_window import attention_pattern


class MaterializedFullAttention(FullAttention):
    """Full attention computed as written, softmax(Q K^T / sqrt(d)) V with the n x n scores stored: the "full
    self-attention" of the paper's Fig. 1 (2020 PyTorch), whose memory is quadratic. (Our `FullAttention` uses
    `scaled_dot_product_attention`, whose fused CPU kernel never stores the n x n matrix; its time stays
    quadratic.)"""

    def forward(self, x: Tensor) -> Tensor:                                       # (B, N, dim)
        q, k, v = (rearrange(f(x), "b n (h e) -> b h n e", h=self.heads) for f in (self.to_q, self.to_k, self.to_v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dim_head)              # (B, H, N, N)
        return self.to_out(rearrange(scores.softmax(-1) @ v, "b h n e -> b n (h e)"))


class SelfAttention(nn.Module):
    """Calls an attention on x alone, so every method is timed through the same forward."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(x)


def cost_methods(cfg) -> dict:
    """name -> (factory n -> module, sizes): Longformer (banded), full attention (SDPA), full as written."""
    dim, heads, dh = cfg.dim, cfg.heads, cfg.dim // cfg.heads
    return {
        "longformer": (lambda n: SelfAttention(LongformerAttention(dim, heads, dh, window=cfg.window)), cfg.sizes),
        "full (SDPA)": (lambda n: SelfAttention(FullAttention(dim, heads, dh)), cfg.full_sizes),
        "full (n x n scores)": (lambda n: MaterializedFullAttention(dim, heads, dh), cfg.full_sizes),
    }


@claim(
    paper="longformer",
    statement=("Longformer's memory grows linearly with the sequence length, where full self-attention's grows "
               "quadratically (Fig. 1): the banded implementation never builds the n x n matrix."),
    criterion=("log-log slope of Longformer's peak forward+backward memory against n, from n = 1024 up, <= 1.15; "
               "and (the measurement sees quadratic memory where it exists) full attention with stored n x n "
               "scores has slope >= 1.8"),
    quick=dict(dim=32, heads=2, window=16, sizes=(64, 128, 256), full_sizes=(64, 128, 256), min_size=64, repeats=1,
               seeds=1),
    full=dict(dim=256, heads=4, window=256, sizes=(256, 512, 1024, 2048, 4096, 8192, 16384),
              full_sizes=(256, 512, 1024, 2048, 4096), min_size=1024, repeats=3, seeds=1),
)
def linear_memory(cfg, ctx) -> ClaimResult:
    rows = {}
    for name, (make, sizes) in cost_methods(cfg).items():
        ctx.seed(0)
        rows[name] = bench_module(make, lambda n: (torch.randn(1, n, cfg.dim, requires_grad=True),), list(sizes),
                                  repeats=cfg.repeats, warmup=1, name=name, device=ctx.device)
    table = {name: {"size": [r["size"] for r in rs], "peak_mb": [r.get("peak_mb") for r in rs],
                    "time_ms": [r.get("time_ms") for r in rs]} for name, rs in rows.items()}
    all_rows = [r for rs in rows.values() for r in rs]
    slopes = method_slopes(all_rows, min_size=cfg.min_size)
    passed = slopes["longformer"]["peak_mb"] <= 1.15 and slopes["full (n x n scores)"]["peak_mb"] >= 1.8
    metrics = {"memory_slope": {k: s["peak_mb"] for k, s in slopes.items()},
               "time_slope": {k: s["time_ms"] for k, s in slopes.items()}, "measurements": table,
               "setting": f"batch 1, dim {cfg.dim}, {cfg.heads} heads, window {cfg.window}, one global token"}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_cost(all_rows, slopes, cfg))


def plot_cost(rows: list[dict], slopes: dict, cfg):
    """Fig. 2 (the attention patterns) and Fig. 1 (memory and time against n) redrawn from our measurements."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 6.2))
    grid = fig.add_gridspec(2, 4, height_ratios=(1, 1.35))
    n = 24
    first = torch.zeros(1, n, dtype=torch.bool)
    first[0, [0, 5]] = True
    patterns = {"(a) full n^2 attention": torch.ones(n, n, dtype=torch.bool),
                "(b) sliding window, w = 6": attention_pattern(n, 6)[0],
                "(c) dilated sliding window, d = 2": attention_pattern(n, 6, dilation=2)[0],
                "(d) global + sliding window": attention_pattern(n, 6, global_mask=first)[0]}
    for i, (title, p) in enumerate(patterns.items()):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(p.numpy(), cmap="Greens", vmin=0, vmax=1.3)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    plot_cost_panels(rows, slopes, xlabel="sequence length n", title="",
                     axes=[fig.add_subplot(grid[1, 0:2]), fig.add_subplot(grid[1, 2:4])])
    fig.suptitle(f"Longformer's attention patterns (Fig. 2) and cost against n (Fig. 1): one layer, dim {cfg.dim}, "
                 f"{cfg.heads} heads, w = {cfg.window}, CPU, one thread; slopes from n = {cfg.min_size} up")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- global attention is needed

CLS, NOISE = 1, 2


def make_pointer_document(n: int, length: int, seed: int = 0, num_values: int = 8,
                          num_noise: int = 16) -> tuple[Tensor, Tensor]:
    """A long document whose class is given by a token at its start, picked by a token at its end.

    `x = [CLS, noise ..., A_a, ..., B_b, noise ..., S_s, noise ...]`: two value tokens A_a and B_b (a, b among
    `num_values`, separate vocabularies) at random places in the first quarter, a selector S_s (s = 0 or 1) in
    the last quarter, noise everywhere else; the label is a if s = 0 else b. It is read from CLS (position 0),
    as the paper classifies from [CLS], the token it gives global attention (Sec. 6): `y` is the label at
    position 0 and IGNORE_INDEX (-100) elsewhere. The label needs whole-document information: with a window
    of less than length / 2 no token sees both the values and the selector, and CLS sees neither S nor,
    often, A and B (the paper's WikiHop and TriviaQA, Sec. 6).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(NOISE, NOISE + num_noise, (n, length), generator=g)
    x[:, 0] = CLS
    a, b, s = (torch.randint(k, (n,), generator=g) for k in (num_values, num_values, 2))
    q, rows = length // 4, torch.arange(n)
    places = torch.rand(n, q - 1, generator=g).argsort(1)[:, :2] + 1               # two distinct places in 1..q-1
    x[rows, places[:, 0]] = NOISE + num_noise + a
    x[rows, places[:, 1]] = NOISE + num_noise + num_values + b
    x[rows, torch.randint(length - q, length, (n,), generator=g)] = NOISE + num_noise + 2 * num_values + s
    y = torch.full((n, length), IGNORE_INDEX)
    y[:, 0] = torch.where(s == 0, a, b)
    return x, y


def pointer_task(length: int, n_train: int, n_test: int, seed: int = 0, num_values: int = 8, num_noise: int = 16):
    """`make_pointer_document` as a `SequenceTask` (scored at CLS only, `num_values` classes)."""
    from torch.utils.data import TensorDataset

    from ...data.tasks import SequenceTask

    x, y = make_pointer_document(n_train + n_test, length, seed, num_values, num_noise)
    train, test = TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])
    return SequenceTask("pointer_document", train, test, vocab_size=NOISE + num_noise + 2 * num_values + 2,
                        num_classes=num_values, per_token=True)


VARIANTS = {"full": ("full", {}),                                               # name -> (attention, kwargs)
            "window + global": ("longformer", dict(global_tokens=(0,))),
            "window only": ("longformer", dict(global_tokens=()))}


@claim(
    paper="longformer",
    statement=("On a task that needs whole-document information, window + global attention nears full attention "
               "while the sliding window alone falls short (Sec. 3.1 'Global Attention': windowed attention alone "
               "is not flexible enough to learn task-specific representations; Sec. 6: global attention on [CLS] "
               "for classification)."),
    criterion=("each attention trains at the learning rate of `lrs` with the best validation accuracy (seed 0, "
               "validation documents drawn apart from train and test); mean test accuracy over seeds: full >= 50% "
               "(four times chance: the task is learned); window + global >= full - 5 points; window only <= full - "
               "20 points"),
    quick=dict(length=64, window=8, n_train=128, n_val=64, n_test=64, steps=4, batch_size=16, lrs=(5e-3,), dim=32,
               seeds=1),
    full=dict(length=128, window=16, n_train=4000, n_val=1000, n_test=1000, steps=800, batch_size=16,
              lrs=(1e-3, 2e-3, 5e-3), dim=32, seeds=3),
)
def global_attention_needed(cfg, ctx) -> ClaimResult:
    task = pointer_task(cfg.length, cfg.n_train, cfg.n_test, seed=0)
    val = dataclasses.replace(task, test=pointer_task(cfg.length, 1, cfg.n_val, seed=1).test)

    def fit(variant, data, lr, seed, desc):
        attention, kw = VARIANTS[variant]
        if attention == "longformer":
            kw = {**kw, "window": cfg.window}
        ctx.seed(seed)
        model = SequenceTransformer(task.vocab_size, task.num_classes, dim=cfg.dim, depth=2, heads=2,
                                    dim_head=cfg.dim // 2, max_len=cfg.length, attention=attention,
                                    attention_kwargs=kw, per_token=True)
        return ctx.fit_and_eval(model, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=lr, seed=seed,
                                warmup_steps=cfg.steps // 10, eval_train=False, desc=desc)

    val_accuracy = {v: {} for v in VARIANTS}                    # the sweep: seed 0, scored on validation documents
    for variant, lr in ctx.grid(VARIANTS, cfg.lrs):
        val_accuracy[variant][lr] = fit(variant, val, lr, 0, f"{variant}, lr {lr:g} (validation)").accuracy
    lr = {v: max(cfg.lrs, key=lambda x: val_accuracy[v][x]) for v in VARIANTS}

    accuracy = {v: [] for v in VARIANTS}
    histories = {v: [] for v in VARIANTS}
    for seed, variant in ctx.grid(cfg.seeds, VARIANTS):
        run = fit(variant, task, lr[variant], seed, f"{variant} seed {seed}")
        accuracy[variant].append(run.accuracy)
        histories[variant].append([h["loss"] for h in run.history])
    mean = mean_over_seeds(accuracy)
    passed = (mean["full"] >= 50.0 and mean["window + global"] >= mean["full"] - 5.0
              and mean["window only"] <= mean["full"] - 20.0)
    curves = {v: np.mean(h, axis=0).tolist() for v, h in histories.items()}
    metrics = {"accuracy": mean, "accuracy_per_seed": accuracy, "chance": 100.0 / task.num_classes,
               "lr": lr, "lr_sweep_val_accuracy": val_accuracy, "train_loss_curves": curves}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_accuracy(mean, accuracy, curves, cfg, task),
                       notes=f"pointer_document task, length {cfg.length}, window {cfg.window} "
                             f"(w/2 = {cfg.window // 2} each side), global attention on CLS (position 0); "
                             f"lr per attention from lr_sweep_val_accuracy ({cfg.n_val} validation documents)")


def plot_accuracy(mean: dict, per_seed: dict, curves: dict, cfg, task):
    """Test accuracy of the three attentions (bars, seeds as dots) and their training loss."""
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = {"full": "tab:gray", "window + global": "tab:green", "window only": "tab:red"}
    for i, v in enumerate(mean):
        ax.bar(i, mean[v], color=colors[v], alpha=0.8)
        ax.plot([i] * len(per_seed[v]), per_seed[v], "k.", ms=8)
        ax.text(i, mean[v] + 1, f"{mean[v]:.1f}", ha="center")
    ax.axhline(100.0 / task.num_classes, color="k", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(mean)), list(mean))
    ax.set(ylim=(0, 105), ylabel="test accuracy (%)",
           title=f"pointer document, n = {cfg.length}, window {cfg.window}")
    ax.legend(loc="upper right")
    window = max(1, cfg.steps // 20)
    for v, c in curves.items():
        smooth = np.convolve(c, np.ones(window) / window, mode="valid")
        ax2.plot(np.arange(len(smooth)) + window, smooth, color=colors[v], label=v)
    ax2.set(xlabel="step", ylabel="training loss (running mean)", title="training")
    ax2.grid(alpha=0.3)
    ax2.legend()
    fig.tight_layout()
    return fig
