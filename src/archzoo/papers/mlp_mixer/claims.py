"""The claims of MLP-Mixer (Tolstikhin et al. 2021, arXiv:2105.01601), each against a ViT of similar size.

1. `on_par_with_vit` (Sec. 1, Sec. 3.2, Table 2): "Mixer attains scores competitive with" attention-based models
   of similar size. We train a small Mixer and a small ViT of the same patch size and width and nearly equal
   parameter count on a 4,000-image Fashion-MNIST subset, with the same recipe (the paper's: Adam, linear
   warm-up and decay, global-norm clipping at 1), the same steps and batches, and each its own learning rate
   from a sweep on held-out training images, and compare test accuracy over 5 seeds.
2. `throughput` (Sec. 3.2, Table 2, "Throughput (img/sec/core)"): at the same resolution and patch size, Mixer
   processes more images per second than ViT (Mixer-B/16 1384 vs ViT-B/16 861 img/s/core at 224). We time the
   forward pass of both canonical B/16 presets at 224 x 224 (`engine.bench.bench_module`, median of repeats) on
   one CPU thread.
"""

from __future__ import annotations

import numpy as np
import torch

from ...engine.bench import bench_module
from ...engine.claims import ClaimResult, claim
from ...registry import create_model
from ..vit import VisionTransformer
from .models import MlpMixer


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def patch_size_for(img_size: int, wanted: int) -> int:
    """The largest patch size <= `wanted` that divides `img_size`: `wanted` itself on Fashion-MNIST (7 of 28 px),
    4 on the 8 px digits a quick run falls back to."""
    return max(p for p in range(1, min(wanted, img_size) + 1) if img_size % p == 0)


def small_pair(cfg, data) -> dict:
    """A small Mixer and a small ViT on the dataset's images: same patch size (`cfg.patch_size`, or the largest
    smaller one that divides the images) and width C, the ViT's depth chosen so that the parameter counts are
    nearly equal (a ViT layer holds the attention's 4 C^2 on top of a Mixer layer's channel MLP)."""
    common = dict(img_size=data.img_size, patch_size=patch_size_for(data.img_size, cfg.patch_size),
                  in_chans=data.in_chans, num_classes=data.num_classes, dim=cfg.dim)
    return {"mixer": lambda: MlpMixer(**common, depth=cfg.mixer_depth, token_mlp_dim=cfg.token_mlp_dim,
                                      channel_mlp_dim=cfg.channel_mlp_dim),
            "vit": lambda: VisionTransformer(**common, depth=cfg.vit_depth, heads=cfg.heads,
                                             mlp_ratio=cfg.channel_mlp_dim / cfg.dim)}


def recipe(cfg, lr: float) -> dict:
    """The paper's recipe (Sec. 3.1) for both nets: Adam with decoupled weight decay, linear warm-up and linear
    decay, gradient clipping at global norm 1; the peak learning rate `lr` is each net's own."""
    return dict(steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adamw", lr=lr,
                weight_decay=cfg.weight_decay, warmup_steps=max(1, cfg.steps // 10), schedule="linear",
                grad_clip=1.0, eval_train=False)


def splits(cfg, data, seed: int):
    """(train, val) for one seed: `n_train` class-balanced training images drawn with `seed` and `n_val` other
    training images as `val`'s test set (for the learning-rate sweep), the first `n_test` test images."""
    return data.validation_split(cfg.n_train, cfg.n_val, n_test=cfg.n_test, seed=seed)


def sweep_then_seeds(cfg, ctx, data) -> tuple[dict, dict, dict, dict]:
    """A comparison of two architectures holds only if each trains at a learning rate that suits it: each net
    trains at each rate of `cfg.lrs[net]` on the seed-0 split and is scored on held-out training images; at its
    best rate it trains seeds 1..`cfg.seeds` (a new image subset and initialisation each, the same for both nets)
    and is scored on the test subset.
    Returns (validation accuracy per net and rate, best rate per net, test accuracy per net and seed, parameters)."""
    _, val0 = splits(cfg, data, seed=0)
    builders = small_pair(cfg, data)
    val = {net: {} for net in builders}
    test = {net: [] for net in builders}
    params = {}
    for net in builders:
        for lr in cfg.lrs[net]:
            ctx.seed(0)
            model = builders[net]()
            params[net] = n_params(model)
            val[net][lr] = ctx.fit_and_eval(model, val0, seed=0, desc=f"{net}, lr {lr:g}", **recipe(cfg, lr)).accuracy
    best = {net: max(val[net], key=val[net].get) for net in builders}
    for seed, net in ctx.grid(range(1, cfg.seeds + 1), builders):
        train, _ = splits(cfg, data, seed=seed)                      # both nets see the same images and batches
        ctx.seed(seed)
        fit = ctx.fit_and_eval(builders[net](), train, seed=seed, desc=f"{net}, seed {seed}", **recipe(cfg, best[net]))
        test[net].append(fit.accuracy)
    return val, best, test, params


# ----------------------------------------------------------------------------- claim 1: on par with ViT


@claim(
    paper="mlp_mixer",
    statement=("On a small dataset, Mixer is on par with a ViT of the same patch size, the same width and nearly "
               "equal parameter count, each trained with the paper's recipe at its own tuned learning rate "
               "(Sec. 3.2, Table 2: 'competitive' with attention models)."),
    criterion=("each net at the learning rate that is best on 1,000 held-out training images in its own sweep "
               "(seed 0), inside the swept range (not at either end); mean test accuracy over 5 further seeds (new "
               "image subset and initialisation each): Mixer >= ViT - 2 points"),
    quick=dict(n_train=256, n_val=64, n_test=256, patch_size=7, dim=16, mixer_depth=1, vit_depth=1, heads=2,
               token_mlp_dim=8, channel_mlp_dim=32, steps=4, batch_size=32, weight_decay=0.05,
               lrs=dict(mixer=(1e-3, 3e-3), vit=(1e-3,)), seeds=1),
    full=dict(n_train=4000, n_val=1000, n_test=2000, patch_size=7, dim=64, mixer_depth=4, vit_depth=3, heads=4,
              token_mlp_dim=32, channel_mlp_dim=256, steps=800, batch_size=32, weight_decay=0.05,
              lrs=dict(mixer=(5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2), vit=(5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)),
              seeds=5),
)
def on_par_with_vit(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    val, best, acc, params = sweep_then_seeds(cfg, ctx, data)
    mean = {net: float(np.mean(v)) for net, v in acc.items()}
    difference = mean["mixer"] - mean["vit"]
    edge = {net: best[net] in (min(cfg.lrs[net]), max(cfg.lrs[net])) and len(cfg.lrs[net]) > 1 for net in best}
    metrics = {"test_accuracy": mean, "test_accuracy_per_seed": acc, "mixer_minus_vit": difference,
               "best_lr": best, "best_lr_at_sweep_edge": edge,
               "val_accuracy": {net: {f"{lr:g}": v for lr, v in s.items()} for net, s in val.items()},
               "parameters": params, "patch_size": patch_size_for(data.img_size, cfg.patch_size),
               "train_images": min(cfg.n_train, len(data.train)), "test_images": min(cfg.n_test, len(data.test))}
    passed = not any(edge.values()) and difference >= -2.0
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_accuracy(acc, mean, params, val, best),
                       notes=f"{cfg.steps} steps of batch {cfg.batch_size} for both nets; sweep on seed 0, test "
                             f"seeds 1-{cfg.seeds}; the first {cfg.n_test} test images")


def plot_accuracy(acc: dict, mean: dict, params: dict, val: dict, best: dict):
    """(a) each net's learning-rate sweep (validation accuracy, seed 0); (b) Table 2's accuracy column in
    miniature: per-seed and mean test accuracy of the Mixer and the ViT, each at its best rate."""
    import matplotlib.pyplot as plt

    fig, (ax_sweep, ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    labels, colors = {"mixer": "Mixer", "vit": "ViT"}, {"mixer": "tab:orange", "vit": "tab:blue"}
    for net, sweep in val.items():
        ax_sweep.plot(list(sweep), list(sweep.values()), "o-", color=colors[net], label=labels[net])
        ax_sweep.plot([best[net]], [sweep[best[net]]], "*", color=colors[net], ms=14)
    ax_sweep.set(xscale="log", xlabel="peak learning rate (AdamW)", ylabel="validation accuracy (%)",
                 title="(a) learning-rate sweep, seed 0 (*: chosen)")
    ax_sweep.legend()
    for i, net in enumerate(acc):
        ax.bar(i, mean[net], color=colors[net], alpha=0.7)
        ax.scatter([i] * len(acc[net]), acc[net], color="black", s=14, zorder=3)
        ax.text(i, mean[net], f"{mean[net]:.1f}", ha="center", va="bottom")
    ax.set_xticks(range(len(acc)), [f"{labels[n]}, lr {best[n]:g}\n({params[n] / 1e3:.0f}k params)" for n in acc])
    lo = min(min(v) for v in acc.values())
    ax.set_ylim(max(0.0, lo - 10), min(100.0, max(max(v) for v in acc.values()) + 5))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("(b) Mixer vs. ViT, each at its own lr")
    for a in (ax_sweep, ax):
        a.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 2: throughput


@claim(
    paper="mlp_mixer",
    statement=("Mixer has a higher throughput than a ViT of the same patch size and resolution (Sec. 3.2, Table 2: "
               "Mixer-B/16 1384 vs ViT-B/16 861 img/s/core at 224 px)."),
    criterion=("forward images/s (median over repeats, batch 4, one CPU thread) of mixer_b16 / vit_b16 at "
               "224 x 224 > 1"),
    quick=dict(pairs=(("mixer_s32", "vit_s32"),), img_size=32, overrides=dict(depth=1), batch_size=2, repeats=2,
               warmup=1, seeds=1),
    full=dict(pairs=(("mixer_b16", "vit_b16"), ("mixer_s16", "vit_s16")), img_size=224, overrides={},
              batch_size=4, repeats=7, warmup=2, seeds=1),
)
def throughput(cfg, ctx) -> ClaimResult:
    rows = {}
    for mixer_name, vit_name in cfg.pairs:
        torch.manual_seed(0)
        mixer = create_model(mixer_name, img_size=cfg.img_size, **cfg.overrides).eval()
        vit = create_model(vit_name, img_size=cfg.img_size, **cfg.overrides).eval()
        images = lambda _: (torch.randn(cfg.batch_size, 3, cfg.img_size, cfg.img_size),)  # noqa: E731
        mixer_row, vit_row = bench_module(mixer, images, [cfg.img_size], device=ctx.device, repeats=cfg.repeats,
                                          warmup=cfg.warmup, backward=False, reference=vit, name=mixer_name,
                                          ref_name=vit_name)
        rows[mixer_name] = {"vs": vit_name, "params": n_params(mixer), "vit_params": n_params(vit),
                            "images_per_s": cfg.batch_size / mixer_row["time_ms"] * 1e3,
                            "vit_images_per_s": cfg.batch_size / vit_row["time_ms"] * 1e3,
                            "time_ms": mixer_row["time_ms"], "vit_time_ms": vit_row["time_ms"],
                            "time_iqr_ms": mixer_row["time_iqr_ms"], "vit_time_iqr_ms": vit_row["time_iqr_ms"]}
        rows[mixer_name]["throughput_ratio"] = rows[mixer_name]["images_per_s"] / rows[mixer_name]["vit_images_per_s"]
        del mixer, vit
    first = cfg.pairs[0][0]
    metrics = {"pairs": rows, "criterion_pair": f"{first} vs {cfg.pairs[0][1]}",
               "throughput_ratio": rows[first]["throughput_ratio"], "device": str(ctx.device),
               "threads": torch.get_num_threads()}
    return ClaimResult(metrics=metrics, passed=rows[first]["throughput_ratio"] > 1, figure=plot_throughput(rows, cfg),
                       notes="forward pass only, under torch.no_grad(), random images")


def plot_throughput(rows: dict, cfg):
    """Table 2's throughput column redrawn: images/s of each Mixer beside its ViT."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = np.arange(len(rows))
    mixer = [r["images_per_s"] for r in rows.values()]
    vit = [r["vit_images_per_s"] for r in rows.values()]
    ax.bar(x - 0.2, mixer, 0.4, color="tab:orange", label="Mixer")
    ax.bar(x + 0.2, vit, 0.4, color="tab:blue", label="ViT")
    for i, r in enumerate(rows.values()):
        ax.text(i, max(mixer[i], vit[i]), f"x{r['throughput_ratio']:.2f}", ha="center", va="bottom")
    ax.set_xticks(x, [f"{m}\nvs {r['vs']}" for m, r in rows.items()])
    ax.set_ylabel(f"images/s (forward, batch {cfg.batch_size}, {cfg.img_size} px)")
    ax.set_title("Throughput, one CPU thread (cf. Table 2)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
