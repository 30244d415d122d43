"""The claims of ViT (Dosovitskiy et al. 2020, arXiv:2010.11929), in miniature on Fashion-MNIST.

1. `data_size` (Sec. 4.3, Fig. 3 and 4): "Transformers lack some of the inductive biases inherent to CNNs, such as
   translation equivariance and locality, and therefore do not generalize well when trained on insufficient
   amounts of data" (Sec. 1); with more data the ViT catches up with the ResNet. We train a small ViT and a CIFAR
   ResNet of similar parameter count on 1k, 10k and 60k Fashion-MNIST images, with the same optimizer, schedule
   and number of steps for every size (the paper trains all models with Adam and the same hyper-parameters on
   every subset of JFT), and compare test accuracy.
2. `attention_distance` (Sec. 4.5, Fig. 7 right): the mean attention distance of the heads grows with depth; the
   lowest layers hold heads that attend locally, the highest attend globally.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ...core.resnet import CifarResNet
from ...data import first
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from .attention import mean_attention_distance
from .models import VisionTransformer


def downsampled(data, img_size: int):
    """The dataset with its images averaged down by an integer factor towards `img_size` (28 -> 14); 8x8 digits
    stay as they are."""
    factor = max(1, data.img_size // img_size)
    if factor == 1:
        return data
    pool = lambda d: TensorDataset(F.avg_pool2d(d.tensors[0], factor), d.tensors[1])  # noqa: E731
    return replace(data, train=pool(data.train), test=pool(data.test), img_size=data.img_size // factor)


def small_vit(cfg, data) -> VisionTransformer:
    """A ViT at the claim's width and depth on the dataset's images (patch `cfg.patch_size`; MLP 4 D as Table 1)."""
    return VisionTransformer(img_size=data.img_size, patch_size=cfg.patch_size, in_chans=data.in_chans,
                             num_classes=data.num_classes, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def adam_schedule(cfg) -> dict:
    """The paper's training recipe (Sec. 4.1) for ViT and ResNet alike: Adam with decoupled weight decay, linear
    warm-up over the first 10% of the steps and linear decay."""
    return dict(steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adamw", lr=cfg.lr,
                weight_decay=cfg.weight_decay, warmup_steps=max(1, cfg.steps // 10), schedule="linear",
                eval_train=False)


# ----------------------------------------------------------------------------- claim 1: data size


@claim(
    paper="vit",
    statement=("With little training data ViT trails a ResNet of similar size and the gap closes as the data grows "
               "(Sec. 4.3, Fig. 3 and 4): ResNets generalize better from small datasets, ViT catches up with more."),
    criterion=("mean test accuracy over seeds, gap = ResNet - ViT in points: gap at 1k training images > gap at 60k, "
               "and gap at 1k > 0"),
    quick=dict(sizes=(200, 1000), img_size=14, dim=16, depth=1, heads=2, patch_size=2, resnet_depth=8,
               resnet_width=4, steps=4, batch_size=32, lr=1e-3, weight_decay=0.1, n_test=256, seeds=1),
    full=dict(sizes=(1000, 10000, 60000), img_size=14, dim=32, depth=3, heads=2, patch_size=2, resnet_depth=8,
              resnet_width=12, steps=600, batch_size=64, lr=2e-3, weight_decay=0.1, n_test=5000, seeds=2),
)
def data_size(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    data = downsampled(replace(data, test=first(data.test, cfg.n_test)), cfg.img_size)
    sizes = [min(n, len(data.train)) for n in cfg.sizes]
    acc = {net: {n: [] for n in sizes} for net in ("vit", "resnet")}
    params = {}
    for seed, n, net in ctx.grid(cfg.seeds, sizes, acc):
        subset = data.subset(n, seed=seed)                            # both nets see the same images and batches
        ctx.seed(seed)
        model = small_vit(cfg, data) if net == "vit" else CifarResNet(
            cfg.resnet_depth, num_classes=data.num_classes, in_chans=data.in_chans, width=cfg.resnet_width)
        params[net] = n_params(model)
        fit = ctx.fit_and_eval(model, subset, seed=seed, desc=f"{net} on {n} images, seed {seed}",
                               **adam_schedule(cfg))
        acc[net][n].append(fit.accuracy)
    mean = {net: mean_over_seeds(acc[net]) for net in acc}
    gap = {n: mean["resnet"][n] - mean["vit"][n] for n in sizes}
    passed = gap[sizes[0]] > gap[sizes[-1]] and gap[sizes[0]] > 0
    metrics = {"train_images": sizes, "test_accuracy": mean, "gap_resnet_minus_vit": gap,
               "test_accuracy_per_seed": acc, "parameters": params}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_accuracy_vs_data(sizes, mean, acc, params),
                       notes=f"test accuracy on the first {len(data.test)} test images; {cfg.steps} steps of batch "
                             f"{cfg.batch_size} for every net and size")


def plot_accuracy_vs_data(sizes: list[int], mean: dict, per_seed: dict, params: dict):
    """Fig. 3 / Fig. 4 redrawn: test accuracy against the number of training images, ViT and ResNet."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    styles = {"resnet": ("tab:gray", "s", "ResNet"), "vit": ("tab:blue", "o", "ViT")}
    for net, (color, marker, label) in styles.items():
        ax.plot(sizes, [mean[net][n] for n in sizes], marker=marker, color=color,
                label=f"{label} ({params[net] / 1e3:.0f}k params)")
        for n in sizes:
            ax.scatter([n] * len(per_seed[net][n]), per_seed[net][n], color=color, alpha=0.35, s=12)
    ax.set_xscale("log")
    ax.set_xlabel("training images (Fashion-MNIST subset)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs. training set size (cf. Fig. 3/4)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 2: mean attention distance


@torch.no_grad()
def attention_distances(model: VisionTransformer, images: torch.Tensor) -> np.ndarray:
    """Mean attention distance in pixels of every head of every layer: (depth, heads)."""
    model.eval()
    grid = model.patch_embed.grid_size
    return np.stack([mean_attention_distance(a, grid, model.patch_size).numpy()
                     for a in model.attention_maps(images)])


@claim(
    paper="vit",
    statement=("The mean attention distance of ViT's heads grows with depth (Sec. 4.5, Fig. 7 right): lower layers "
               "hold heads that attend locally, the highest layers attend globally."),
    criterion=("after training, the mean over heads of the mean attention distance (pixels, on held-out images) is "
               "larger in the last layer than in the first, in every seed"),
    quick=dict(n_train=512, dim=32, depth=2, heads=2, patch_size=4, steps=4, batch_size=32, lr=1e-3,
               weight_decay=0.1, n_images=16, seeds=1),
    full=dict(n_train=60000, dim=32, depth=4, heads=4, patch_size=4, steps=900, batch_size=64, lr=3e-3,
              weight_decay=0.1, n_images=128, seeds=2),
)
def attention_distance(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    data = data.subset(min(cfg.n_train, len(data.train)), seed=0)
    images = data.test.tensors[0][:cfg.n_images]                      # held-out images, as the paper's 128
    trained, at_init, accuracy = [], [], []
    for seed in range(cfg.seeds):
        ctx.seed(seed)
        model = small_vit(cfg, data)
        at_init.append(attention_distances(model, images))
        fit = ctx.fit_and_eval(model, data, seed=seed, desc=f"ViT seed {seed}", **adam_schedule(cfg))
        trained.append(attention_distances(model, images))
        accuracy.append(fit.accuracy)
    first_layer = [float(d[0].mean()) for d in trained]
    last_layer = [float(d[-1].mean()) for d in trained]
    passed = all(last > first for first, last in zip(first_layer, last_layer))
    metrics = {
        "first_layer_mean_distance": float(np.mean(first_layer)),
        "last_layer_mean_distance": float(np.mean(last_layer)),
        "first_layer_per_seed": first_layer, "last_layer_per_seed": last_layer,
        "layer_mean_distance": np.mean(trained, axis=(0, 2)).tolist(),
        "layer_mean_distance_at_init": np.mean(at_init, axis=(0, 2)).tolist(),
        "head_distance_per_seed": [d.tolist() for d in trained],          # [seed][layer][head], pixels
        "head_distance_at_init_per_seed": [d.tolist() for d in at_init],
        "test_accuracy_per_seed": accuracy, "test_accuracy": float(np.mean(accuracy)),
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_distance_vs_depth(trained, at_init, data.img_size),
                       notes=f"distances on the first {len(images)} test images; patch {cfg.patch_size} px")


def plot_distance_vs_depth(trained: list[np.ndarray], at_init: list[np.ndarray], img_size):
    """Fig. 7 (right) redrawn: mean attention distance of every head against the layer, one colour per head."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    depth, heads = trained[0].shape
    layers = np.arange(1, depth + 1)
    for s, d in enumerate(trained):
        jitter = (s - (len(trained) - 1) / 2) * 0.08
        for h in range(heads):
            ax.scatter(layers + jitter, d[:, h], color=f"C{h}", s=14, alpha=0.8,
                       label=f"head {h + 1}" if s == 0 else None)
    ax.plot(layers, np.mean(at_init, axis=(0, 2)), "--", color="gray", label="at initialization (mean)")
    ax.plot(layers, np.mean(trained, axis=(0, 2)), "-", color="black", label="trained (mean)")
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    size = img_size if isinstance(img_size, int) else max(img_size)
    ax.set_title(f"ViT on {size}x{size} images (cf. Fig. 7 right)")
    ax.set_xticks(layers)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
