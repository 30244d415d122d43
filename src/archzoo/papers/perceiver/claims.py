"""The claims of the Perceiver (Jaegle et al. 2021, arXiv:2103.03206), in miniature on CPU.

1. `linear_cost` (Sec. 2.1): cross-attention from N latents to M inputs costs O(M N), so at fixed N the model's
   time and memory grow linearly in M, where a self-attention layer on the inputs grows as M^2.
2. `modalities` (Sec. 4, Tables 1, 4, 5): one architecture with one set of hyperparameters learns images, audio
   and point clouds; only the position features follow the input's dimensionality. We use Fashion-MNIST pixels,
   generated audio-like series and generated 3D point clouds (`modalities.py`).
3. `permutation` (Sec. 4.1, Table 2): with position features attached to each pixel before a fixed permutation,
   the Perceiver's accuracy is unchanged, since nothing but those features tells it where a pixel sits; yet it
   uses them (it beats the same Perceiver with constant position channels), and a ConvNet, whose locality the
   permutation destroys, drops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from ...core.resnet import CifarResNet
from ...core.transformer import Transformer
from ...data import first
from ...engine.bench import bench_module, load_now, loglog_slope, method_slopes, plot_cost_panels
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


def step_flops(module: nn.Module, x: Tensor) -> int:
    """FLOPs of one forward+backward step of `module` on `x`, as `FlopCounterMode` counts them (matrix products:
    2 per multiply-add; elementwise work is not counted): the cost the algorithm fixes, free of timing noise."""
    with FlopCounterMode(display=False) as counter:
        module(x).sum().backward()             # a measurement, not training: no optimizer, nothing is updated
    return counter.get_total_flops()


@claim(
    paper="perceiver",
    statement=("At a fixed number of latents the Perceiver's cost is linear in the input size M (Sec. 2.1: "
               "cross-attention is O(MN)), while self-attention on the inputs is quadratic (O(M^2))."),
    criterion=("log-log slopes of forward+backward cost: Perceiver time and peak-memory slopes both in [0.8, 1.2] "
               "over M >= slope_from; one self-attention layer on the same inputs: memory slope >= 1.7 and time "
               "slope >= 1.5 over its sizes; the control that timing noise cannot move, FLOPs counted at every M: "
               "Perceiver FLOP slope in [0.95, 1.05], self-attention's >= 1.8; and a quiet machine, 1-minute load "
               "average <= 1.5 at the start (a busier machine measures its neighbours: the run is void)"),
    quick=dict(sizes=(128, 256), dense_sizes=(128, 256), slope_from=128, dim=32, num_latents=16, repeats=1,
               warmup=0, max_load=float("inf"), seeds=1),
    full=dict(sizes=(4096, 8192, 16384, 32768, 65536), dense_sizes=(1024, 2048, 4096), slope_from=4096, dim=64,
              num_latents=64, repeats=9, warmup=2, max_load=1.5, seeds=1),
)
def linear_cost(cfg, ctx) -> ClaimResult:
    load_start = load_now()

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
    flops = {"Perceiver": [step_flops(perceiver(m), *inputs(m)) for m in cfg.sizes],
             "self-attention": [step_flops(self_attention(m), *inputs(m)) for m in cfg.dense_sizes]}
    load_end = load_now()
    curves = {m: {"M": [r["size"] for r in rows if "peak_mb" in r],
                  "peak_mb": [r["peak_mb"] for r in rows if "peak_mb" in r],
                  "time_ms": [r["time_ms"] for r in rows if "time_ms" in r]} for m, rows in methods.items()}
    rows = [r for rs in methods.values() for r in rs]
    fitted = {**method_slopes(methods["Perceiver"], min_size=cfg.slope_from),   # each over all its own sizes
              **method_slopes(methods["self-attention"])}
    slopes = {m: {"memory": s["peak_mb"], "time": s["time_ms"]} for m, s in fitted.items()}
    slopes["Perceiver"]["flops"] = loglog_slope(cfg.sizes, flops["Perceiver"], min_size=cfg.slope_from)
    slopes["self-attention"]["flops"] = loglog_slope(cfg.dense_sizes, flops["self-attention"])
    p, s = slopes["Perceiver"], slopes["self-attention"]
    quiet = load_start <= cfg.max_load
    passed = (0.8 <= p["time"] <= 1.2 and 0.8 <= p["memory"] <= 1.2 and s["memory"] >= 1.7 and s["time"] >= 1.5
              and 0.95 <= p["flops"] <= 1.05 and s["flops"] >= 1.8 and quiet)
    figure = plot_cost_panels(rows, fitted, xlabel="input size M", title="Cost in the input size at fixed latents "
                              "(Sec. 2.1)")
    return ClaimResult(metrics={"slopes": slopes, "curves": curves, "flops": flops, "load_average":
                                {"start": load_start, "end": load_end}, "quiet": quiet}, passed=passed,
                       figure=figure,
                       notes=f"batch 1, width {cfg.dim}, {cfg.num_latents} latents; SDPA math kernel for both; "
                             f"time: median of {cfg.repeats} after {cfg.warmup} warm-up; memory: peak live tensor "
                             f"bytes of forward+backward; FLOPs: FlopCounterMode, forward+backward")


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


def recipe(cfg, lr: float | None = None) -> dict:
    """One training recipe for every modality: AdamW (at `lr`, else `cfg.lr`), linear warm-up over 10% of the
    steps, cosine decay."""
    return dict(steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adamw", lr=cfg.lr if lr is None else lr,
                weight_decay=1e-4,
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


class ConstantPosition(nn.Module):
    """The Perceiver `model` with every pixel given the position features of the first pixel: the same byte array
    width and input LayerNorm, but the position channels tell it nothing (a LayerNorm over a pixel's channels
    would erase a lone intensity channel, so dropping the channels is no control)."""

    def __init__(self, model: Perceiver):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:                                  # (B, C, H, W)
        array = self.model.byte_array(x)                                     # (B, M, C + position channels)
        c, m = x.shape[1], array.shape[1]
        array = torch.cat((array[:, :, :c], array[:, :1, c:].expand(-1, m, -1)), dim=-1)
        return self.model.forward_head(self.model.forward_array(array))


PERMUTATION_RUNS = ("perceiver/original", "perceiver/permuted", "perceiver_constant_position/original",
                    "convnet/original", "convnet/permuted")


def permutation_model(run: str, cfg, data, perm: Tensor) -> nn.Module:
    """The model of `run` (PERMUTATION_RUNS: "<net>/<pixel order>")."""
    net, order = run.split("/")
    if net == "convnet":
        model = CifarResNet(cfg.cnn_depth, num_classes=data.num_classes, in_chans=data.in_chans, width=cfg.cnn_width)
    else:
        model = small_perceiver(cfg, data.num_classes, in_chans=data.in_chans, input_axis=2,
                                input_size=(data.img_size, data.img_size), max_freq=data.img_size)
        model = ConstantPosition(model) if net == "perceiver_constant_position" else model
    return PixelPermuted(model, perm) if order == "permuted" else model


@claim(
    paper="perceiver",
    statement=("With Fourier position features the Perceiver learns the images, uses where each pixel sits (it beats "
               "the same Perceiver with constant position channels), and yet its accuracy is unchanged by a fixed "
               "permutation of the pixels (Sec. 4.1, Table 2), while a ConvNet's drops."),
    criterion=("each of Perceiver, Perceiver with constant position channels, ConvNet on original and ConvNet on "
               "permuted pixels takes the learning rate of {1e-3, 3e-3} with the best validation accuracy (seed 0, "
               "validation images apart from train and test; the permuted Perceiver takes the Perceiver's, its "
               "training being the same by construction); then over 2 seeds, mean test accuracy on Fashion-MNIST: "
               "Perceiver >= 70% (it has learned the images), |Perceiver permuted - original| <= 1 point, Perceiver "
               "- Perceiver with constant position channels >= 5 points, ConvNet original - permuted >= 5 points"),
    quick=dict(n_train=64, n_val=32, n_test=64, num_bands=4, num_latents=8, latent_dim=16, repeats=2, depth=1,
               latent_heads=2, cnn_depth=8, cnn_width=4, steps=2, batch_size=16, lrs=(1e-3, 3e-3), seeds=1),
    full=dict(n_train=3000, n_val=1000, n_test=1000, num_bands=8, num_latents=32, latent_dim=64, repeats=2, depth=2,
              latent_heads=4, cnn_depth=8, cnn_width=16, steps=400, batch_size=32, lrs=(1e-3, 3e-3), seeds=2),
)
def permutation(cfg, ctx) -> ClaimResult:
    data, val = ctx.dataset("fashion-mnist", fallback="digits").validation_split(cfg.n_train, cfg.n_val, cfg.n_test)
    perm = torch.randperm(data.img_size ** 2, generator=torch.Generator().manual_seed(1234))   # fixed for all
    swept = [r for r in PERMUTATION_RUNS if r != "perceiver/permuted"]
    val_acc = {r: {} for r in swept}
    for run, lr in ctx.grid(swept, cfg.lrs):
        ctx.seed(0)
        fit = ctx.fit_and_eval(permutation_model(run, cfg, data, perm), val, seed=0, desc=f"{run} lr {lr:g}",
                               **recipe(cfg, lr))
        val_acc[run][lr] = fit.accuracy
    lr = {r: max(cfg.lrs, key=lambda x: val_acc[r][x]) for r in swept}
    lr["perceiver/permuted"] = lr["perceiver/original"]
    acc = {r: [] for r in PERMUTATION_RUNS}
    for seed, run in ctx.grid(cfg.seeds, PERMUTATION_RUNS):
        ctx.seed(seed)                                         # both orders start from the same weights
        fit = ctx.fit_and_eval(permutation_model(run, cfg, data, perm), data, seed=seed, desc=f"{run} seed {seed}",
                               **recipe(cfg, lr[run]))
        acc[run].append(fit.accuracy)
    mean = mean_over_seeds(acc)
    effects = {"perceiver_permuted_minus_original": mean["perceiver/permuted"] - mean["perceiver/original"],
               "perceiver_minus_constant_position": (mean["perceiver/original"]
                                                     - mean["perceiver_constant_position/original"]),
               "convnet_drop": mean["convnet/original"] - mean["convnet/permuted"]}
    checks = {"perceiver_learned": mean["perceiver/original"] >= 70.0,
              "perceiver_invariant": abs(effects["perceiver_permuted_minus_original"]) <= 1.0,
              "perceiver_uses_position": effects["perceiver_minus_constant_position"] >= 5.0,
              "convnet_drops": effects["convnet_drop"] >= 5.0}
    return ClaimResult(metrics={"test_accuracy": mean, "test_accuracy_per_seed": acc, "effects": effects,
                                "checks": checks, "lr": lr, "lr_sweep_val_accuracy": val_acc},
                       passed=all(checks.values()), figure=plot_permutation(mean, acc),
                       notes=f"{len(data.train)} training, {len(val.test)} validation and {len(data.test)} test "
                             f"images; {cfg.steps} steps; lr per run from lr_sweep_val_accuracy (seed 0)")


def plot_permutation(mean: dict, per_seed: dict):
    """Table 2 redrawn as bars: test accuracy of every run (blue: original pixels, orange: permuted), seeds as dots."""
    import matplotlib.pyplot as plt

    labels = {"perceiver/original": "Perceiver", "perceiver/permuted": "Perceiver\npermuted",
              "perceiver_constant_position/original": "Perceiver,\nconstant pos.", "convnet/original": "ConvNet",
              "convnet/permuted": "ConvNet\npermuted"}
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, run in enumerate(mean):
        ax.bar(i, mean[run], 0.7, color="tab:orange" if run.endswith("permuted") else "tab:blue")
        ax.scatter([i] * len(per_seed[run]), per_seed[run], color="k", s=10, zorder=3)
        ax.text(i, mean[run] + 1, f"{mean[run]:.1f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(mean)), [labels[r] for r in mean], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Fixed pixel permutation (cf. Table 2)")
    fig.tight_layout()
    return fig
