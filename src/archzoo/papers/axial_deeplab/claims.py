"""The claims of Axial-DeepLab (Wang et al. 2020, arXiv:2003.07853): cost, position sensitivity, panoptic segmentation.

1. `cost_scaling` (Sec. 3.2): an axial-attention block (height then width axis) costs O(hw(h + w)) where global 2D
   self-attention costs O((hw)^2). With n = hw on square maps that is n^1.5 against n^2: we measure peak memory and
   time of one forward+backward of both on the same maps at growing resolution and fit log-log slopes in n.
2. `position_sensitivity` (Sec. 3.1, Table 1): position-sensitive attention (relative encodings on q, k and v, Eq. 4)
   beats attention without positional terms and attention with query-side terms only (Eq. 2): the same small
   Axial-ResNet trained on Fashion-MNIST with each of the three.
3. `panoptic_scenes` (Sec. 3.3, 4.2): a small Axial-DeepLab (semantic + centre heatmap + offset heads, grouping
   post-process) segments generated shape scenes at least as well as the same heads on its convolutional twin (each
   axial-attention pair a 3x3 convolution), each at its own learning rate; both far above a no-things baseline.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ...core.attention import MapSelfAttention
from ...data.scenes import CLASSES, THING_IDS, make_scenes
from ...engine.bench import bench_module, method_slopes, plot_cost_panels
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from ...engine.metrics import panoptic_quality
from ...engine.train import train
from .axial_attention import AxialAttention
from .models import axial_resnet_tiny
from .panoptic import AxialDeepLab, panoptic_inference, panoptic_loss, panoptic_targets


class AxialPair(nn.Module):
    """The attention of an axial block: height-axis then width-axis position-sensitive attention (Sec. 3.2)."""

    def __init__(self, dim: int, heads: int, span: int):
        super().__init__()
        self.height = AxialAttention(dim, heads=heads, span=span, axis="height")
        self.width = AxialAttention(dim, heads=heads, span=span, axis="width")

    def forward(self, x: Tensor) -> Tensor:                              # (B, C, H, W)
        return self.width(self.height(x))



@claim(
    paper="axial_deeplab",
    statement=("Cost (Sec. 3.2): axial-attention along height then width costs O(hw(h + w)), i.e. n^1.5 in the number "
               "of positions n = hw of a square map, where global 2D self-attention costs O((hw)^2) = n^2."),
    criterion=("log-log slope of peak memory (one forward+backward) against n over the sizes: axial <= 1.6 and "
               "global self-attention >= 1.8; and axial peak memory below global self-attention's at the largest n"),
    quick=dict(sides=(8, 16), dim=32, heads=4, batch=1, repeats=1, warmup=0, seeds=1),
    full=dict(sides=(8, 12, 16, 24, 32, 48), dim=32, heads=4, batch=1, repeats=3, warmup=1, seeds=1),
)
def cost_scaling(cfg, ctx) -> ClaimResult:
    sizes = [s * s for s in cfg.sides]
    rows = bench_module(
        lambda n: AxialPair(cfg.dim, cfg.heads, span=math.isqrt(n)),
        lambda n: torch.randn(cfg.batch, cfg.dim, math.isqrt(n), math.isqrt(n)),
        sizes, device=ctx.device, repeats=cfg.repeats, warmup=cfg.warmup,
        reference=lambda n: MapSelfAttention(cfg.dim, cfg.heads, cfg.dim // cfg.heads), name="axial",
        ref_name="global_attention")
    methods = ("axial", "global_attention")
    slopes = method_slopes(rows, methods)
    last = {m: next(r for r in rows[::-1] if r["method"] == m) for m in methods}
    passed = (slopes["axial"]["peak_mb"] <= 1.6 and slopes["global_attention"]["peak_mb"] >= 1.8
              and last["axial"]["peak_mb"] < last["global_attention"]["peak_mb"])
    figure = plot_cost_panels(rows, slopes, xlabel="positions n = h w", guides=(1.5, 2),
                              title="Axial-attention (height + width) vs global self-attention: cost against "
                                    "resolution (Sec. 3.2)")
    return ClaimResult(metrics={"slopes": slopes, "rows": rows}, passed=passed, figure=figure)



POSITION_VARIANTS = {"none": "no position terms (Eq. 1)", "q": "query terms only (Eq. 2)",
                     "qkv": "position-sensitive q, k, v (Eq. 4)"}


@claim(
    paper="axial_deeplab",
    statement=("Position sensitivity (Sec. 3.1, Table 1): relative positional encodings on queries, keys and values "
               "(Eq. 4) improve accuracy over axial attention without positional terms and over query-only terms."),
    criterion=("mean test accuracy over seeds of the same small Axial-ResNet on Fashion-MNIST: position-sensitive "
               "(q, k, v) >= no-position + 2.0 points, and position-sensitive >= query-only"),
    quick=dict(n_train=256, n_test=256, steps=3, batch_size=32, lr=2e-3, seeds=1),
    full=dict(n_train=10000, n_test=2000, steps=160, batch_size=32, lr=5e-3, seeds=2),
)
def position_sensitivity(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    data = data.subset(min(cfg.n_train, len(data.train)), seed=0, n_test=cfg.n_test)
    size = data.img_size if isinstance(data.img_size, int) else data.img_size[0]
    accuracy = {v: [] for v in POSITION_VARIANTS}
    params = {}
    for seed, variant in ctx.grid(cfg.seeds, POSITION_VARIANTS):
        ctx.seed(seed)
        model = axial_resnet_tiny(num_classes=data.num_classes, in_chans=data.in_chans, img_size=size,
                                  position=variant)
        params[variant] = sum(p.numel() for p in model.parameters())
        fit = ctx.fit_and_eval(model, data, steps=cfg.steps, batch_size=cfg.batch_size, seed=seed, eval_train=False,
                               lr=cfg.lr, weight_decay=1e-4, warmup_steps=max(1, cfg.steps // 10),
                               schedule="cosine", desc=f"position={variant} seed {seed}")
        accuracy[variant].append(fit.accuracy)
    mean = mean_over_seeds(accuracy)
    passed = mean["qkv"] >= mean["none"] + 2.0 and mean["qkv"] >= mean["q"]
    metrics = {"test_accuracy": mean, "test_accuracy_per_seed": accuracy, "params": params}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_positions(mean, accuracy, params))


def plot_positions(mean: dict, accuracy: dict, params: dict):
    """Table 1's ablation as bars: test accuracy without, with query-only and with q, k, v position terms."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, v in enumerate(mean):
        ax.bar(i, mean[v], color=("tab:gray", "tab:orange", "tab:blue")[i], alpha=0.7,
               label=f"{POSITION_VARIANTS[v]}: {mean[v]:.2f}% ({params[v]:,} params)")
        ax.plot([i] * len(accuracy[v]), accuracy[v], "ko", ms=4)
    ax.set_xticks(range(len(mean)), list(mean))
    lo = min(min(a) for a in accuracy.values())
    ax.set_ylim(max(0.0, lo - 5), min(100.0, max(max(a) for a in accuracy.values()) + 3))
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Axial-ResNet: positional terms in axial attention (cf. Table 1)")
    fig.tight_layout()
    return fig


def scene_dataset(n: int, size: int, seed: int, sigma: float) -> tuple[TensorDataset, object]:
    """Scenes and their training targets: (image, semantic, centre heatmap, offsets, instance)."""
    scenes = make_scenes(n, size=size, seed=seed)
    heatmap, offset = panoptic_targets(scenes.instance, sigma=sigma)
    return TensorDataset(scenes.images, scenes.semantic, heatmap, offset, scenes.instance), scenes


def position_prior(semantic: Tensor) -> Tensor:
    """The trivial baseline: at every pixel the training set's most frequent *stuff* class there, no things."""
    stuff = torch.stack([(semantic == c).sum(0) for c in range(len(CLASSES) - len(THING_IDS))])   # (S, H, W)
    return stuff.argmax(0)                                                                   # (H, W)


BACKBONES = {"axial": "Axial-DeepLab (axial-attention backbone)", "conv": "conv twin (3x3 convolution backbone)"}
PQ_KEYS = ("pq", "sq", "rq", "pq_things", "pq_stuff")


@claim(
    paper="axial_deeplab",
    statement=("Panoptic segmentation (Sec. 3.3, 4.2): with the same semantic, centre-heatmap and offset heads, "
               "grouping and training, the axial-attention backbone segments scenes into stuff and thing instances "
               "at least as well as a convolutional backbone of the same layout and parameters (the paper: "
               "Axial-DeepLab ahead of the conv-based Panoptic-DeepLab); both far above a no-things baseline."),
    criterion=("each backbone (axial, and its conv twin: every axial-attention pair a 3x3 convolution, about as "
               "many parameters) trained with the lr of `lrs` with the highest validation PQ (seed 0), then "
               "`seeds` seeds at that lr; mean test PQ over the seeds: axial >= conv, and both >= the no-things "
               "baseline (per-pixel most frequent stuff class) + 0.25 (sanity control: both learned)"),
    quick=dict(size=32, n_train=64, n_val=16, n_test=16, steps=3, batch_size=16, lrs=(2e-3,), sigma=2.0, seeds=1),
    full=dict(size=32, n_train=3000, n_val=200, n_test=300, steps=200, batch_size=32, lrs=(1e-3, 2e-3, 4e-3),
              sigma=2.0, seeds=3),
)
def panoptic_scenes(cfg, ctx) -> ClaimResult:
    train_set, train_scenes = scene_dataset(cfg.n_train, cfg.size, seed=1000, sigma=cfg.sigma)
    val, test = make_scenes(cfg.n_val, size=cfg.size, seed=3000), make_scenes(cfg.n_test, size=cfg.size, seed=2000)
    prior = position_prior(train_scenes.semantic)
    trivial = panoptic_quality([(prior, torch.zeros_like(prior))] * cfg.n_test, zip(test.semantic, test.instance),
                               len(CLASSES), THING_IDS)

    def loss_fn(model, batch):
        x, semantic, heatmap, offset, instance = batch
        return panoptic_loss(model(x), semantic, heatmap, offset, instance)

    def predict(model, scenes) -> tuple[Tensor, Tensor, Tensor]:
        model.eval()
        with torch.no_grad():
            out = {k: v.cpu() for k, v in model(scenes.images.to(ctx.device)).items()}
        return *panoptic_inference(out, THING_IDS), out["center"][:, 0]

    def fit(block: str, lr: float, seed: int) -> tuple[dict, dict, tuple]:
        """Train one backbone with the heads; (validation PQ, test PQ, first test predictions)."""
        ctx.seed(seed)
        model = AxialDeepLab(len(CLASSES), 1, cfg.size, block=block).to(ctx.device)
        train(model, train_set, steps=cfg.steps, batch_size=cfg.batch_size, loss_fn=loss_fn, lr=lr,
              weight_decay=1e-4, warmup_steps=max(1, cfg.steps // 10), schedule="cosine", seed=seed,
              device=ctx.device, progress=ctx.progress, desc=f"{block} lr {lr} seed {seed}")
        quality = {}
        for split, scenes in (("val", val), ("test", test)):
            semantic, instance, heat = predict(model, scenes)
            quality[split] = panoptic_quality(zip(semantic, instance), zip(scenes.semantic, scenes.instance),
                                              len(CLASSES), THING_IDS)
        return quality["val"], quality["test"], (semantic[:4], instance[:4], heat[:4])

    lrs = [float(lr) for lr in cfg.lrs]
    sweep, results, examples, params = {}, {}, {}, {}
    for block in BACKBONES:
        params[block] = sum(p.numel() for p in AxialDeepLab(len(CLASSES), 1, cfg.size, block=block).parameters())
        runs = {lr: fit(block, lr, 0) for lr in lrs}                       # the sweep, seed 0
        sweep[block] = {str(lr): {"val_pq": r[0]["pq"], "test_pq": r[1]["pq"]} for lr, r in runs.items()}
        best = max(lrs, key=lambda lr, runs=runs: runs[lr][0]["pq"])
        results[block] = {"lr": best, "test": [runs[best][1]] + [fit(block, best, seed)[1]
                                                                 for seed in range(1, cfg.seeds)]}
        examples[block] = runs[best][2]
    per_seed = {block: {k: [r[k] for r in res["test"]] for k in PQ_KEYS} for block, res in results.items()}
    mean = {block: mean_over_seeds(v) for block, v in per_seed.items()}
    baseline = {k: trivial[k] for k in PQ_KEYS}
    passed = bool(mean["axial"]["pq"] >= mean["conv"]["pq"]
                  and min(mean[b]["pq"] for b in BACKBONES) >= baseline["pq"] + 0.25)
    per_class = {block: {CLASSES[c]: float(np.mean([r["per_class"].get(c, {}).get("pq", 0.0) for r in res["test"]]))
                         for c in range(len(CLASSES))} for block, res in results.items()}
    metrics = {"test": mean, "test_per_seed": per_seed, "axial_minus_conv_pq": mean["axial"]["pq"] - mean["conv"]["pq"],
               "best_lr": {b: r["lr"] for b, r in results.items()}, "lr_sweep_seed0": sweep, "params": params,
               "per_class_pq": per_class, "trivial_baseline": baseline}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_scenes(test, examples, mean, baseline),
                       notes=f"{cfg.steps} steps at batch {cfg.batch_size}, {cfg.n_train} training scenes, lr chosen "
                             f"on {cfg.n_val} validation scenes, PQ on {cfg.n_test} test scenes; parameters {params}")


def plot_scenes(test, examples: dict, mean: dict, trivial: dict):
    """Fig. 3/6 style: input scenes, the ground truth, each backbone's panoptic prediction and its centre heatmap."""
    import matplotlib.pyplot as plt

    n = len(examples["axial"][0])
    fig, axes = plt.subplots(2 + 2 * len(examples), n, figsize=(2.2 * n, 4.4 + 4.4 * len(examples)), squeeze=False)

    def colour(sem: Tensor, inst: Tensor) -> np.ndarray:
        rng = np.random.default_rng(0)
        palette = rng.uniform(0.2, 1.0, (len(CLASSES) * 32, 3))
        ids = (sem.clamp_min(0) * 32 + inst % 32).numpy()
        img = palette[ids]
        img[sem.numpy() < 0] = 0.0
        return img

    for j in range(n):
        panels = [(test.images[j, 0].numpy(), "gray", "input"),
                  (colour(test.semantic[j], test.instance[j]), None, "ground truth")]
        for block, (semantic, instance, heat) in examples.items():
            panels += [(colour(semantic[j], instance[j]), None, f"{block}: prediction (PQ {mean[block]['pq']:.3f})"),
                       (heat[j].numpy(), "magma", f"{block}: centre heatmap")]
        for i, (img, cmap, title) in enumerate(panels):
            axes[i, j].imshow(img, cmap=cmap)
            axes[i, j].set_axis_off()
            if j == 0:
                axes[i, j].set_title(title, fontsize=9, loc="left")
    fig.suptitle(" | ".join(f"{block} PQ {m['pq']:.3f} (things {m['pq_things']:.3f}, stuff {m['pq_stuff']:.3f})"
                            for block, m in mean.items()) + f"\nno-things baseline PQ {trivial['pq']:.3f}")
    fig.tight_layout()
    return fig
