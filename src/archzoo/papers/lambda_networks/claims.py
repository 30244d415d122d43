"""The claims of LambdaNetworks (Bello 2021, arXiv:2102.08602): memory (Sec. 3.3, Table 2) and accuracy (Table 3).

1. `memory_scaling`: a lambda layer never materialises an n x m attention map. With the lambda convolution its
   activations are Theta(b n |k| |v|) (Table 2), linear in the number of positions n, where multi-head
   self-attention stores b |h| n^2 attention weights. We measure the peak memory of one forward+backward of both
   layers on the same feature maps at growing resolution and fit log-log slopes.
2. `accuracy`: a small LambdaResNet trained on Fashion-MNIST reaches the accuracy of the same ResNet with 3x3
   convolutions (Table 3: the lambda layer beats the convolution on ImageNet, 78.4 vs 76.9 top-1).
"""

from __future__ import annotations

import math

import torch

from ...core.attention import MapSelfAttention
from ...core.resnet import CifarResNet
from ...engine.bench import bench_module, method_slopes, plot_cost_panels
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from .lambda_layer import LambdaLayer
from .models import LambdaCifarResNet


@claim(
    paper="lambda_networks",
    statement=("Memory (Sec. 3.3, Table 2): the lambda layer (lambda convolution) needs Theta(b n |k| |v|) memory, "
               "linear in the number of positions n, where self-attention needs Theta(b |h| n^2)."),
    criterion=("log-log slope of peak memory (one forward+backward) against n over the sizes: "
               "lambda layer <= 1.15 and multi-head self-attention >= 1.7"),
    quick=dict(sides=(8, 12), dim=32, dim_k=16, heads=4, r=7, batch=2, repeats=1, warmup=0, seeds=1),
    full=dict(sides=(16, 24, 32, 40, 48), dim=64, dim_k=16, heads=4, r=7, batch=2, repeats=3, warmup=1, seeds=1),
)
def memory_scaling(cfg, ctx) -> ClaimResult:
    sizes = [s * s for s in cfg.sides]                                    # n = H W, square maps
    rows = bench_module(
        lambda n: LambdaLayer(cfg.dim, cfg.dim, dim_k=cfg.dim_k, heads=cfg.heads, r=cfg.r),
        lambda n: torch.randn(cfg.batch, cfg.dim, math.isqrt(n), math.isqrt(n)),
        sizes, device=ctx.device, repeats=cfg.repeats, warmup=cfg.warmup,
        reference=lambda n: MapSelfAttention(cfg.dim, cfg.heads, cfg.dim // cfg.heads),
        name="lambda", ref_name="self_attention")
    slopes = method_slopes(rows, ("lambda", "self_attention"))
    passed = slopes["lambda"]["peak_mb"] <= 1.15 and slopes["self_attention"]["peak_mb"] >= 1.7
    figure = plot_cost_panels(rows, slopes, xlabel="positions n = H W",
                              title="Lambda layer vs self-attention: cost against resolution (cf. Table 2)")
    return ClaimResult(metrics={"slopes": slopes, "rows": rows}, passed=passed, figure=figure)



@claim(
    paper="lambda_networks",
    statement=("Accuracy (Table 3): replacing the 3x3 convolutions of a ResNet by lambda layers does not cost "
               "accuracy (ImageNet: 78.4% vs 76.9% top-1 with fewer parameters)."),
    criterion="mean test error over seeds: LambdaResNet-8 <= ResNet-8 (convolutions) + 2.0 points",
    quick=dict(n_train=256, n_test=256, steps=3, batch_size=32, lr=2e-3, width=16, r=7, seeds=1),
    full=dict(n_train=10000, n_test=2000, steps=150, batch_size=64, lr=2e-3, width=16, r=7, seeds=2),
)
def accuracy(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    data = data.subset(min(cfg.n_train, len(data.train)), seed=0, n_test=cfg.n_test)
    nets = {
        "resnet8": lambda: CifarResNet(8, data.num_classes, data.in_chans, cfg.width),
        "lambda_resnet8": lambda: LambdaCifarResNet(8, data.num_classes, data.in_chans, cfg.width, r=cfg.r),
    }
    errors = {net: [] for net in nets}
    params = {}
    for seed, net in ctx.grid(cfg.seeds, nets):
        ctx.seed(seed)
        model = nets[net]()
        params[net] = sum(p.numel() for p in model.parameters())
        fit = ctx.fit_and_eval(model, data, steps=cfg.steps, batch_size=cfg.batch_size, seed=seed, eval_train=False,
                               lr=cfg.lr, weight_decay=1e-4, warmup_steps=max(1, cfg.steps // 10),
                               schedule="cosine", desc=f"{net} seed {seed}")
        errors[net].append(fit.error)
    mean = mean_over_seeds(errors)
    passed = mean["lambda_resnet8"] <= mean["resnet8"] + 2.0
    metrics = {"test_error": mean, "test_error_per_seed": errors, "params": params}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_accuracy(mean, errors, params))


def plot_accuracy(mean: dict, errors: dict, params: dict):
    """Table 3 as a bar chart: test error of the convolutional and the lambda ResNet, seeds as dots."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    for i, net in enumerate(mean):
        ax.bar(i, mean[net], color=("tab:gray", "tab:blue")[i], alpha=0.7,
               label=f"{net} ({params[net]:,} params): {mean[net]:.2f}%")
        ax.plot([i] * len(errors[net]), errors[net], "ko", ms=4)
    ax.set_xticks(range(len(mean)), list(mean))
    ax.set_ylabel("Fashion-MNIST test error (%)")
    ax.legend(fontsize=8)
    ax.set_title("3x3 convolution vs lambda layer (cf. Table 3)")
    fig.tight_layout()
    return fig
