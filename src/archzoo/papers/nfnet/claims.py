"""The claims of NFNets (arXiv:2102.06171) and of the NF-ResNets they build on (arXiv:2101.08692).

1. `signal_propagation`: at initialization an NF-ResNet's residual stream has the variance profile of a
   batch-normalized pre-activation ResNet (2101.08692 Sec. 3-4, Fig. 1-2), while the same ResNet without
   normalization or beta/alpha scaling explodes.
2. `agc_large_batch`: adaptive gradient clipping raises the largest learning rate at which an NFNet trains well with
   SGD at a large batch, at no cost in accuracy at its tuned rate (2102.06171 Sec. 4, Fig. 2); an lr sweep for each
   of no clipping, AGC and (the control) global norm clipping.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ...engine.claims import ClaimResult, claim
from ...engine.runtime import num_threads
from ...engine.schedules import warmup_schedule
from ...engine.train import evaluate
from ...engine.trainer import Trainer, supervised_step
from .agc import AdaptiveGradClip
from .models import NFNet, nfnet_small
from .spp import plot_signal_propagation, signal_propagation

# ----------------------------------------------------------------------------- claim 1: signal propagation


def _he_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")              # He init, fan-in
    return conv


class BNPreActBottleneck(nn.Module):
    """The BN-ReLU pre-activation bottleneck (He et al. 2016, arXiv:1603.05027), the reference of 2101.08692 Fig. 1:
    h' = h + conv1x1(relu(BN(conv3x3(relu(BN(conv1x1(relu(BN(h))))))))); a transition's shortcut is a strided 1x1
    convolution of relu(BN(h)). archzoo.core.resnet has only the original post-activation blocks (ReLU after the
    addition), whose residual stream is not the pure sum of branches that the signal propagation plot follows."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bottleneck_ratio: float = 0.25):
        super().__init__()
        width = int(out_channels * bottleneck_ratio)
        self.bn0, self.conv0 = nn.BatchNorm2d(in_channels), _he_conv(in_channels, width, 1)
        self.bn1, self.conv1 = nn.BatchNorm2d(width), _he_conv(width, width, 3, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(width), _he_conv(width, out_channels, 1)
        transition = stride > 1 or in_channels != out_channels
        self.shortcut = _he_conv(in_channels, out_channels, 1, stride) if transition else None

    def forward(self, h: Tensor) -> Tensor:                                   # (B, C_in, H, W)
        x = F.relu(self.bn0(h))
        shortcut = h if self.shortcut is None else self.shortcut(x)          # (B, C_out, H/s, W/s)
        f = self.conv1(F.relu(self.bn1(self.conv0(x))))
        return shortcut + self.conv2(F.relu(self.bn2(f)))


class BNPreActResNet(nn.Module):
    """A stem convolution and stages of `BNPreActBottleneck`s with the layout of the NF-ResNet it is compared to;
    `forward` returns the residual stream (only the signal propagation at init is studied)."""

    def __init__(self, depths, widths, in_chans: int = 3, strides=(1, 2, 2, 2), bottleneck_ratio: float = 0.25):
        super().__init__()
        self.stem = _he_conv(in_chans, widths[0] // 2, 3)
        blocks, in_channels = [], widths[0] // 2
        for depth, width, stride in zip(depths, widths, strides):
            for j in range(depth):
                blocks.append(BNPreActBottleneck(in_channels, width, stride if j == 0 else 1, bottleneck_ratio))
                in_channels = width
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:                                   # (B, C, H, W)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return h                                                              # (B, widths[-1], H/8, W/8)


def nf_resnet(depths, widths, *, alpha: float, **kw) -> NFNet:
    """The NF-ResNet of 2101.08692 with the layout of `BNPreActResNet`: ReLU, bottleneck ratio 0.25, one ungrouped
    3x3 convolution, no SE, strided 1x1 transition shortcuts, skip gains at 1, no stochastic depth and no head."""
    return NFNet(depths, widths, alpha=alpha, stem="shallow", activation="relu", bottleneck_ratio=0.25,
                 group_width=None, se_ratio=0.0, num_3x3=1, stochdepth_rate=0.0, drop_rate=0.0, skip_gain_init=1.0,
                 avg_down=False, num_classes=0, **kw)


SPP_NETS = {
    "bn": "BN-ReLU pre-activation ResNet",
    "nf": "NF-ResNet (Scaled WS, beta, alpha = 1)",
    "nf_no_ws": "NF-ResNet without Scaled WS (He init)",
    "unnormalized": "unnormalized ResNet (He init, no beta, alpha = 1)",
}


@claim(
    paper="nfnet",
    statement="At initialization the residual stream of an NF-ResNet (Scaled WS, h/beta, alpha = 1) has the "
              "per-block average channel variance of a BN-ReLU pre-activation ResNet of the same depth, without its "
              "mean shift, while the same ResNet without normalization or scaling explodes (2101.08692 Fig. 1-2).",
    criterion="mean over seeds, at every block: 0.5 <= Var_NF / Var_BN <= 2 and the NF average channel squared mean "
              "< 0.1; and the unnormalized ResNet's variance at the last block >= 100 x the BN net's",
    quick=dict(depths=(2, 2, 2, 2), widths=(16, 32, 64, 128), batch_size=8, img_size=16, seeds=1),
    full=dict(depths=(12, 12, 12, 12), widths=(64, 128, 256, 512), batch_size=16, img_size=64, seeds=3),
)
def signal_propagation_matches_batchnorm(cfg, ctx) -> ClaimResult:
    depths, widths = tuple(cfg.depths), tuple(cfg.widths)
    stats = {k: [] for k in SPP_NETS}
    for seed in range(cfg.seeds):
        ctx.seed(seed)
        x = torch.randn(cfg.batch_size, 3, cfg.img_size, cfg.img_size, device=ctx.device)     # N(0, 1) input
        nets = {"bn": BNPreActResNet(depths, widths),
                "nf": nf_resnet(depths, widths, alpha=1.0),
                "nf_no_ws": nf_resnet(depths, widths, alpha=1.0, ws=False),
                "unnormalized": nf_resnet(depths, widths, alpha=1.0, ws=False, signal_scaling=False)}
        for key, net in nets.items():
            stats[key].append(signal_propagation(net.to(ctx.device), x))
    mean = {k: {s: np.mean([run[s] for run in runs], axis=0).tolist() for s in ("squared_mean", "variance")}
            for k, runs in stats.items()}
    ratio = np.asarray(mean["nf"]["variance"]) / np.asarray(mean["bn"]["variance"])
    explosion = mean["unnormalized"]["variance"][-1] / mean["bn"]["variance"][-1]
    nf_max_squared_mean = max(mean["nf"]["squared_mean"])
    passed = bool(0.5 <= ratio.min() and ratio.max() <= 2.0 and nf_max_squared_mean < 0.1 and explosion >= 100)
    expected = nf_resnet(depths, widths, alpha=1.0).expected_variances
    metrics = {
        "variance": {k: v["variance"] for k, v in mean.items()},
        "squared_mean": {k: v["squared_mean"] for k, v in mean.items()},
        "per_seed_variance": {k: [run["variance"] for run in runs] for k, runs in stats.items()},
        "expected_variance_nf": expected,
        "nf_over_bn_variance": ratio.tolist(),
        "nf_over_bn_min": float(ratio.min()), "nf_over_bn_max": float(ratio.max()),
        "nf_max_squared_mean": nf_max_squared_mean,
        "bn_max_squared_mean": max(mean["bn"]["squared_mean"]),
        "unnormalized_over_bn_last_block": explosion,
    }
    stage_ends = np.cumsum(depths).tolist()
    figure = plot_signal_propagation({SPP_NETS[k]: v for k, v in mean.items()}, expected_variance=expected,
                                     stage_ends=stage_ends, linear=[SPP_NETS[k] for k in ("bn", "nf", "nf_no_ws")],
                                     title=f"Signal propagation at init, {sum(depths)} bottleneck blocks, N(0,1) input")
    return ClaimResult(metrics=metrics, passed=passed, figure=figure)


# ----------------------------------------------------------------------------- claim 2: adaptive gradient clipping

AGC_METHODS = {"none": "SGD (no clipping)", "agc": "AGC", "clip": "global norm clipping"}


def _fit_nfnet(data, method: str, lr: float, cfg, seed: int, ctx) -> dict:
    """Train `nfnet_small` with SGD + Nesterov at `lr` (linear warm-up, then cosine) with AGC (`cfg.clipping`),
    global norm clipping (`cfg.grad_clip`) or neither; test accuracy, or the step at which the loss became NaN."""
    ctx.seed(seed)
    model = nfnet_small(num_classes=data.num_classes, in_chans=data.in_chans, drop_rate=0.0, stochdepth_rate=0.0)
    losses: list[float] = []

    def loss_fn(net, batch):
        x, y = batch
        loss = F.cross_entropy(net(x), y)
        losses.append(float(loss.detach()))                                   # kept even when the run diverges
        return loss

    sgd = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    trainer = Trainer(model, sgd, warmup_schedule(sgd, steps=cfg.steps, warmup_steps=cfg.warmup_steps),
                      steps=cfg.steps, data=data.train, batch_size=cfg.batch_size, step=supervised_step(loss_fn),
                      hooks=[AdaptiveGradClip(cfg.clipping)] if method == "agc" else [],
                      grad_clip=cfg.grad_clip if method == "clip" else None, seed=seed, device=ctx.device,
                      progress=ctx.progress, desc=f"{method} lr {lr} seed {seed}")
    try:
        trainer.fit()
        accuracy, diverged_at = evaluate(model, data.test, device=ctx.device)["accuracy"], None
    except FloatingPointError:                                                # the NaN guard stops a diverged run
        accuracy, diverged_at = None, len(losses)
    return {"accuracy": accuracy, "diverged_at_step": diverged_at, "losses": losses}


def largest_good_lr(accuracy: dict, threshold: float) -> float | None:
    """The largest learning rate whose mean test accuracy is >= `threshold` (a NaN run counts as 0), None if none."""
    good = [lr for lr, acc in accuracy.items() if acc >= threshold]
    return max(good) if good else None


@claim(
    paper="nfnet",
    statement="Adaptive gradient clipping raises the largest learning rate at which a normalizer-free network "
              "trains well with SGD + Nesterov at a large batch, without costing accuracy at the tuned learning "
              "rate (2102.06171 Sec. 4, Fig. 2).",
    criterion="learning-rate sweep per method, mean test accuracy over seeds (a diverged run counts as 0); 'trains "
              "well' = within 3 points of the best no-clipping accuracy (its own tuned lr): AGC's best accuracy >= "
              "the no-clipping best - 1 point, and AGC's largest lr that trains well >= 2 x no-clipping's; global "
              "norm clipping (the control) is reported beside them",
    quick=dict(steps=6, batch_size=32, lrs=(0.05, 0.8), clipping=0.01, grad_clip=0.2, warmup_steps=1, n_train=256,
               n_test=128, seeds=1),
    full=dict(steps=150, batch_size=256, lrs=(0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2), clipping=0.01,
              grad_clip=0.2, warmup_steps=15, n_train=None, n_test=None, seeds=3),
)
def agc_large_batch(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("digits")                              # 1,437 training images: batch 256 is 18% of them
    if cfg.n_train:
        data = data.subset(cfg.n_train, seed=0)
    if cfg.n_test:
        data = replace(data, test=TensorDataset(*(t[:cfg.n_test] for t in data.test.tensors)))
    lrs = [float(lr) for lr in cfg.lrs]
    runs = {m: {lr: [] for lr in lrs} for m in AGC_METHODS}
    with num_threads(1):                                      # a 0.2M-parameter net on 8x8 images: 1 thread is fastest
        for seed, method, lr in ctx.grid(cfg.seeds, runs, lrs):
            runs[method][lr].append(_fit_nfnet(data, method, lr, cfg, seed, ctx))
    accuracy = {m: {lr: float(np.mean([r["accuracy"] or 0.0 for r in rs])) for lr, rs in by_lr.items()}
                for m, by_lr in runs.items()}
    best = {m: max(acc.values()) for m, acc in accuracy.items()}
    threshold = best["none"] - 3.0
    largest = {m: largest_good_lr(acc, threshold) for m, acc in accuracy.items()}
    passed = bool(largest["none"] is not None and largest["agc"] is not None and best["agc"] >= best["none"] - 1.0
                  and largest["agc"] >= 2 * largest["none"])
    metrics = {
        "mean_test_accuracy": {m: {str(lr): a for lr, a in acc.items()} for m, acc in accuracy.items()},
        "best_accuracy": best,
        "best_lr": {m: max(acc, key=acc.get) for m, acc in accuracy.items()},
        "trains_well_threshold": threshold,
        "largest_good_lr": largest,
        "test_accuracy": {m: {str(lr): [r["accuracy"] for r in rs] for lr, rs in by_lr.items()}
                          for m, by_lr in runs.items()},
        "diverged_at_step": {m: {str(lr): [r["diverged_at_step"] for r in rs] for lr, rs in by_lr.items()}
                             for m, by_lr in runs.items()},
        "train_loss": {m: {str(lr): [r["losses"] for r in rs] for lr, rs in by_lr.items()}
                       for m, by_lr in runs.items()},
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=_plot_agc(accuracy, threshold, cfg))


def _plot_agc(accuracy: dict, threshold: float, cfg):
    """Fig. 2 (left) of 2102.06171 turned to learning rates: mean test accuracy against the learning rate for each
    method; a run that diverged counts as 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = {"none": "tab:red", "agc": "tab:blue", "clip": "tab:green"}
    labels = dict(AGC_METHODS, agc=f"AGC ($\\lambda$ = {cfg.clipping})", clip=f"global norm clipping ({cfg.grad_clip})")
    for method, acc in accuracy.items():
        ax.plot(list(acc), list(acc.values()), "o-", color=colors[method], label=labels[method])
    ax.axhline(threshold, color="gray", ls="--", lw=1, label="trains well (best no-clipping - 3)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("Learning rate (peak)")
    ax.set_ylabel("Test accuracy (%, mean over seeds)")
    ax.set_title(f"NFNet on digits, SGD+Nesterov, batch {cfg.batch_size}, {cfg.steps} steps")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
