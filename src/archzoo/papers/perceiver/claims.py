"""The claims of the Perceiver (Jaegle et al. 2021, arXiv:2103.03206), in miniature on CPU.

1. `linear_cost` (Sec. 2.1): cross-attention from N latents to M inputs costs O(M N), so at fixed N the model's
   time and memory grow linearly in M, where a self-attention layer on the inputs grows as M^2.
2. `modalities` (Sec. 4, Tables 1, 4, 5): one architecture with one set of hyperparameters learns images, audio
   and point clouds; only the position features follow the input's dimensionality. We use Fashion-MNIST pixels,
   generated audio-like series and generated 3D point clouds (`modalities.py`).
3. `permutation` (Sec. 4.1, Table 2): with position features attached to each pixel before a fixed permutation,
   the Perceiver's accuracy is unchanged, since nothing but those features tells it where a pixel sits; a ConvNet,
   whose locality the permutation destroys, drops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import TensorDataset

from ...core.resnet import CifarResNet
from ...core.transformer import Transformer
from ...data import first
from ...engine.bench import bench_module, method_slopes, plot_cost_panels
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from .fourier import fourier_features
from .modalities import SERIES_CLASSES, SHAPES, point_clouds, series
from .perceiver import Perceiver


class _Math(nn.Module):
    """`module(x)` inside SDPA's math kernel, which forms the full score matrix (N x M, or M x M)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return self.module(x)


# ----------------------------------------------------------------------------- claim 1: linear cost


@claim(
    paper="perceiver",
    statement=("At a fixed number of latents the Perceiver's cost is linear in the input size M (Sec. 2.1: "
               "cross-attention is O(MN)), while self-attention on the inputs is quadratic (O(M^2))."),
    criterion=("log-log slopes over M >= slope_from of forward+backward cost: Perceiver time and peak-memory slopes "
               "both in [0.8, 1.2]; one self-attention layer on the same inputs: memory slope >= 1.7 and time "
               "slope >= 1.5"),
    quick=dict(sizes=(128, 256), dense_sizes=(128, 256), slope_from=128, dim=32, num_latents=16, repeats=1,
               warmup=0, seeds=1),
    full=dict(sizes=(1024, 2048, 4096, 8192, 16384), dense_sizes=(1024, 2048, 4096), slope_from=1024, dim=64,
              num_latents=64, repeats=3, warmup=1, seeds=1),
)
def linear_cost(cfg, ctx) -> ClaimResult:
    def inputs(m):
        return (torch.randn(1, m, cfg.dim, requires_grad=True),)          # a byte array of M elements

    def perceiver(m):                  # one cross-attend (1 head) and a 1-block latent tower (4 heads), no head
        return _Math(Perceiver(in_chans=cfg.dim, num_classes=0, input_axis=0, input_size=(m,),
                               num_latents=cfg.num_latents, latent_dim=cfg.dim, repeats=1, self_per_cross_attn=1,
                               latent_heads=4))

    def self_attention(m):             # one pre-norm Transformer block (4 heads) on the inputs themselves
        return _Math(Transformer(cfg.dim, 1, heads=4, dim_head=cfg.dim // 4, mlp_ratio=1.0))

    kw = dict(device=ctx.device, repeats=cfg.repeats, warmup=cfg.warmup)
    methods = {"Perceiver": bench_module(perceiver, inputs, cfg.sizes, name="Perceiver", **kw),
               "self-attention": bench_module(self_attention, inputs, cfg.dense_sizes, name="self-attention", **kw)}
    curves = {m: {"M": [r["size"] for r in rows if "peak_mb" in r],
                  "peak_mb": [r["peak_mb"] for r in rows if "peak_mb" in r],
                  "time_ms": [r["time_ms"] for r in rows if "time_ms" in r]} for m, rows in methods.items()}
    rows = [r for rs in methods.values() for r in rs]
    fitted = method_slopes(rows, min_size=cfg.slope_from)
    slopes = {m: {"memory": s["peak_mb"], "time": s["time_ms"]} for m, s in fitted.items()}
    p, s = slopes["Perceiver"], slopes["self-attention"]
    passed = 0.8 <= p["time"] <= 1.2 and 0.8 <= p["memory"] <= 1.2 and s["memory"] >= 1.7 and s["time"] >= 1.5
    figure = plot_cost_panels(rows, fitted, xlabel="input size M", title="Cost in the input size at fixed latents "
                              "(Sec. 2.1)")
    return ClaimResult(metrics={"slopes": slopes, "curves": curves}, passed=passed, figure=figure,
                       notes=f"batch 1, width {cfg.dim}, {cfg.num_latents} latents; SDPA math kernel for both; "
                             f"time: median of {cfg.repeats}; memory: peak live tensor bytes of forward+backward")


# ----------------------------------------------------------------------------- claim 2: three modalities


@dataclass
class Task:
    """A classification task as `fit_and_eval` takes it."""

    train: TensorDataset
    test: TensorDataset
    num_classes: int


def modality_tasks(cfg, ctx) -> dict[str, tuple[Task, dict]]:
    """Each modality's task and the Perceiver input arguments its dimensionality fixes (the rest is shared).

    Following Sec. 3.2 the max frequency mu is the number of samples along an axis (28 for the images, the series
    length for the audio); point clouds have no grid: their byte array is the Fourier features of the coordinates
    themselves (as for ModelNet40, Sec. 4.3), with mu = `cfg.points_max_freq`.
    """
    fm = ctx.dataset("fashion-mnist", fallback="digits")
    fm = fm.subset(min(cfg.n_train, len(fm.train)), seed=0, n_test=cfg.n_test)
    n = cfg.n_train + cfg.n_test
    s = series(n, cfg.series_length, seed=1)
    pc = point_clouds(n, cfg.points, seed=2)
    pc = TensorDataset(fourier_features(pc.tensors[0], cfg.num_bands, cfg.points_max_freq), pc.tensors[1])
    split = lambda d, k: Task(first(d, cfg.n_train), TensorDataset(*(t[cfg.n_train:] for t in d.tensors)), k)  # noqa
    return {
        "images": (Task(fm.train, fm.test, fm.num_classes),
                   dict(in_chans=fm.in_chans, input_axis=2, input_size=(fm.img_size, fm.img_size),
                        max_freq=fm.img_size)),
        "audio": (split(s, len(SERIES_CLASSES)),
                  dict(in_chans=1, input_axis=1, input_size=(cfg.series_length,), max_freq=cfg.series_length)),
        "point clouds": (split(pc, len(SHAPES)),
                         dict(in_chans=pc.tensors[0].shape[-1], input_axis=0, input_size=(cfg.points,))),
    }


def small_perceiver(cfg, num_classes: int, **inputs) -> Perceiver:
    """The claims' Perceiver: `cfg.num_latents` x `cfg.latent_dim` latents, `cfg.repeats` cross-attends with a
    `cfg.depth`-block tower, shared weights as in the paper."""
    return Perceiver(num_classes=num_classes, num_bands=cfg.num_bands, num_latents=cfg.num_latents,
                     latent_dim=cfg.latent_dim, repeats=cfg.repeats, self_per_cross_attn=cfg.depth,
                     latent_heads=cfg.latent_heads, **inputs)


def recipe(cfg) -> dict:
    """One training recipe for every modality: AdamW, linear warm-up over 10% of the steps, cosine decay."""
    return dict(steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adamw", lr=cfg.lr, weight_decay=1e-4,
                warmup_steps=max(1, cfg.steps // 10), schedule="cosine", grad_clip=1.0, eval_train=False)


@claim(
    paper="perceiver",
    statement=("The same architecture with the same hyperparameters learns images, audio and point clouds (Sec. 4): "
               "only the position features follow the input's dimensionality."),
    criterion=("for each modality, mean test accuracy over seeds >= halfway between chance and 100% "
               "(images 55%, audio 58.3%, point clouds 60%)"),
    quick=dict(n_train=64, n_test=64, series_length=64, points=32, num_bands=4, points_max_freq=16, num_latents=8,
               latent_dim=16, repeats=2, depth=1, latent_heads=2, steps=2, batch_size=16, lr=1e-3, seeds=1),
    full=dict(n_train=3000, n_test=1000, series_length=256, points=128, num_bands=8, points_max_freq=16,
              num_latents=32, latent_dim=64, repeats=2, depth=2, latent_heads=4, steps=200, batch_size=32, lr=1e-3,
              seeds=2),
)
def modalities(cfg, ctx) -> ClaimResult:
    tasks = modality_tasks(cfg, ctx)
    acc = {name: [] for name in tasks}
    for seed, name in ctx.grid(cfg.seeds, tasks):
        task, inputs = tasks[name]
        ctx.seed(seed)
        model = small_perceiver(cfg, task.num_classes, **inputs)
        acc[name].append(ctx.fit_and_eval(model, task, seed=seed, desc=f"{name} seed {seed}", **recipe(cfg)).accuracy)
    mean = mean_over_seeds(acc)
    chance = {name: 100.0 / task.num_classes for name, (task, _) in tasks.items()}
    threshold = {name: (c + 100.0) / 2 for name, c in chance.items()}
    passed = all(mean[name] >= threshold[name] for name in tasks)
    return ClaimResult(metrics={"test_accuracy": mean, "test_accuracy_per_seed": acc, "chance": chance,
                                "threshold": threshold}, passed=passed, figure=plot_modalities(mean, acc, chance),
                       notes=f"{cfg.n_train} training and {cfg.n_test} test examples per modality; {cfg.steps} steps")


def plot_modalities(mean: dict, per_seed: dict, chance: dict):
    """Test accuracy per modality against chance (cf. Tables 1, 4, 5)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    names = list(mean)
    ax.bar(names, [mean[n] for n in names], color="tab:blue", alpha=0.7, label="Perceiver (mean over seeds)")
    for i, n in enumerate(names):
        ax.scatter([i] * len(per_seed[n]), per_seed[n], color="k", s=12, zorder=3)
        ax.hlines(chance[n], i - 0.4, i + 0.4, color="tab:red", linestyles="--", label="chance" if i == 0 else None)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("One architecture, three modalities")
    ax.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 3: permutation


class PixelPermuted(nn.Module):
    """`model` applied to images whose pixels are reordered by a fixed permutation `perm` of the H W positions.

    For the Perceiver the position features are attached to each pixel first and travel with it (Table 2: the
    features are computed on the original grid); a ConvNet just sees the scrambled image.
    """

    def __init__(self, model: nn.Module, perm: Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("perm", perm)

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C, H, W)
        if isinstance(self.model, Perceiver):
            return self.model.forward_head(self.model.forward_array(self.model.byte_array(x)[:, self.perm]))
        b, c, h, w = x.shape
        return self.model(x.reshape(b, c, h * w)[:, :, self.perm].reshape(b, c, h, w))


@claim(
    paper="perceiver",
    statement=("With Fourier position features the Perceiver's accuracy is unchanged by a fixed permutation of the "
               "pixels (Sec. 4.1, Table 2), while a ConvNet's drops."),
    criterion=("Perceiver: |mean test accuracy on permuted - on original Fashion-MNIST| <= 1 point over seeds "
               "(the ConvNet's drop is reported as a contrast, not part of the criterion)"),
    quick=dict(n_train=64, n_test=64, num_bands=4, num_latents=8, latent_dim=16, repeats=2, depth=1, latent_heads=2,
               cnn_depth=8, cnn_width=4, steps=2, batch_size=16, lr=1e-3, seeds=1),
    full=dict(n_train=3000, n_test=1000, num_bands=8, num_latents=32, latent_dim=64, repeats=2, depth=2,
              latent_heads=4, cnn_depth=8, cnn_width=8, steps=150, batch_size=32, lr=1e-3, seeds=2),
)
def permutation(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    data = data.subset(min(cfg.n_train, len(data.train)), seed=0, n_test=cfg.n_test)
    perm = torch.randperm(data.img_size ** 2, generator=torch.Generator().manual_seed(1234))   # fixed for all
    acc = {net: {order: [] for order in ("original", "permuted")} for net in ("perceiver", "convnet")}
    for seed, net, order in ctx.grid(cfg.seeds, acc, ("original", "permuted")):
        ctx.seed(seed)                                         # both orders start from the same weights
        if net == "perceiver":
            model = small_perceiver(cfg, data.num_classes, in_chans=data.in_chans, input_axis=2,
                                    input_size=(data.img_size, data.img_size), max_freq=data.img_size)
        else:
            model = CifarResNet(cfg.cnn_depth, num_classes=data.num_classes, in_chans=data.in_chans,
                                width=cfg.cnn_width)
        model = PixelPermuted(model, perm) if order == "permuted" else model
        fit = ctx.fit_and_eval(model, data, seed=seed, desc=f"{net} {order} seed {seed}", **recipe(cfg))
        acc[net][order].append(fit.accuracy)
    mean = {net: mean_over_seeds(a) for net, a in acc.items()}
    change = {net: m["permuted"] - m["original"] for net, m in mean.items()}
    passed = abs(change["perceiver"]) <= 1.0
    return ClaimResult(metrics={"test_accuracy": mean, "test_accuracy_per_seed": acc, "change_permuted_minus_original":
                                change}, passed=passed, figure=plot_permutation(mean, acc),
                       notes=f"{len(data.train)} training and {len(data.test)} test images; {cfg.steps} steps")


def plot_permutation(mean: dict, per_seed: dict):
    """Table 2 redrawn as bars: test accuracy on original and permuted pixels, Perceiver and ConvNet."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    width = 0.35
    for j, (order, color) in enumerate((("original", "tab:blue"), ("permuted", "tab:orange"))):
        xs = np.arange(len(mean)) + (j - 0.5) * width
        ax.bar(xs, [mean[net][order] for net in mean], width, color=color, label=order)
        for x, net in zip(xs, mean):
            ax.scatter([x] * len(per_seed[net][order]), per_seed[net][order], color="k", s=10, zorder=3)
    ax.set_xticks(range(len(mean)), ["Perceiver (Fourier features)", "ConvNet"])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fixed pixel permutation (cf. Table 2)")
    ax.legend()
    fig.tight_layout()
    return fig
