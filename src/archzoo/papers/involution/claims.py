"""RedNet matches a ResNet of the same depth with fewer parameters and FLOPs (Li et al. 2021, Sec. 4.1, Table 2,
Fig. 1).

On ImageNet, RedNet-50 is more accurate than ResNet-50 with 39% fewer parameters (15.5M against 25.6M) and 36%
fewer multiply-adds (2.6G against 4.1G). We rebuild the comparison at small scale: two CIFAR-layout
bottleneck nets of the same depth (`CifarRedNet`), one with a 7x7 involution in every bottleneck, one with
ResNet's 3x3 convolution there; everything else (stem, 1x1 convolutions, shortcuts, head, training) is shared,
and for a given seed both see the same batches. Trained on a subset of Fashion-MNIST.
"""

from __future__ import annotations

from ...engine.claims import ClaimResult, claim, mean_over_seeds
from .flops import count_macs
from .rednet import CifarRedNet

NETS = {"rednet": True, "resnet": False}      # name -> involution in the bottleneck



@claim(
    paper="involution",
    statement=("RedNet matches the accuracy of a ResNet of the same depth with fewer parameters and fewer FLOPs "
               "(Sec. 4.1, Table 2, Fig. 1: RedNet-50 vs ResNet-50)."),
    criterion=("mean test accuracy over seeds: rednet >= resnet - 1.5 points, AND rednet has fewer parameters, "
               "AND rednet has fewer multiply-adds (FlopCounterMode + involution multiply-adds) at 28x28"),
    quick=dict(depth=11, width=16, stem_stride=2, n_train=256, n_test=256, steps=3, batch_size=32, lr=0.05,
               warmup_steps=1, seeds=1),
    full=dict(depth=11, width=16, stem_stride=2, n_train=5000, n_test=2000, steps=160, batch_size=32, lr=0.05,
              warmup_steps=16, seeds=3),
)
def rednet_vs_resnet(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    data = data.subset(min(cfg.n_train, len(data.train)), seed=0, n_test=cfg.n_test)
    input_size = (data.in_chans, *data.test.tensors[0].shape[-2:])
    accuracy = {net: [] for net in NETS}
    params, macs = {}, {}
    for seed, net in ctx.grid(cfg.seeds, NETS):
        ctx.seed(seed)
        model = CifarRedNet(cfg.depth, num_classes=data.num_classes, in_chans=data.in_chans, width=cfg.width,
                            involution=NETS[net], stem_stride=cfg.stem_stride)
        params[net] = sum(p.numel() for p in model.parameters())
        macs[net] = count_macs(model, input_size)
        fit = ctx.fit_and_eval(model, data, steps=cfg.steps, batch_size=cfg.batch_size, seed=seed, eval_train=False,
                               optimizer="sgd", lr=cfg.lr, momentum=0.9, weight_decay=1e-4,
                               warmup_steps=cfg.warmup_steps, schedule="cosine", desc=f"{net}-{cfg.depth} seed {seed}")
        accuracy[net].append(fit.accuracy)

    mean = mean_over_seeds(accuracy)
    passed = (mean["rednet"] >= mean["resnet"] - 1.5 and params["rednet"] < params["resnet"]
              and macs["rednet"] < macs["resnet"])
    metrics = {
        "depth": cfg.depth,
        "accuracy": mean,
        "accuracy_per_seed": accuracy,
        "accuracy_gap": mean["rednet"] - mean["resnet"],
        "params": params,
        "macs": macs,
        "params_ratio": params["rednet"] / params["resnet"],
        "macs_ratio": macs["rednet"] / macs["resnet"],
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_accuracy_vs_cost(accuracy, params, macs, cfg.depth),
                       notes=f"test accuracy on {len(data.test)} test images; MACs for one {input_size} image")


def plot_accuracy_vs_cost(accuracy: dict, params: dict, macs: dict, depth: int):
    """Fig. 1 redrawn: accuracy against parameters (left) and multiply-adds (right), RedNet and ResNet."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    style = {"rednet": ("tab:red", "o", f"RedNet-{depth} (7x7 involution)"),
             "resnet": ("tab:blue", "s", f"ResNet-{depth} (3x3 convolution)")}
    for ax, (cost, unit, scale) in zip(axes, ((params, "parameters (K)", 1e3), (macs, "multiply-adds (M)", 1e6))):
        for net, (color, marker, label) in style.items():
            x = cost[net] / scale
            ax.scatter([x] * len(accuracy[net]), accuracy[net], color=color, marker=marker, alpha=0.4)
            ax.scatter([x], [np.mean(accuracy[net])], color=color, marker=marker, s=90, edgecolor="black",
                       label=f"{label}: {np.mean(accuracy[net]):.2f}%")
        ax.set_xlabel(unit)
        ax.margins(0.2)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle("Accuracy against parameters and multiply-adds, Fashion-MNIST (cf. Fig. 1; small: seeds, big: mean)")
    fig.tight_layout()
    return fig
