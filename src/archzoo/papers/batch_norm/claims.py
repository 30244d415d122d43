"""The claims of Batch Normalization (Ioffe & Szegedy 2015, arXiv:1502.03167), at laptop scale on Fashion-MNIST.

1. `fewer_steps_to_target` (Sec. 4.2.2, Fig. 2-3): with BN a convolutional net reaches a target accuracy in far
   fewer steps, at the plain net's learning rate (BN-Baseline) and more so at 5x that rate (BN-x5).
2. `higher_learning_rate` (Sec. 3.3, 4.2.1): BN trains at a learning rate 10x the plain net's best, where the
   plain net diverges or stays at chance.
3. `mnist_sigmoid_distributions` (Sec. 4.1, Fig. 1): in the 3-hidden-layer sigmoid network the distribution of a
   last-layer sigmoid input in the inference network (population statistics, Algorithm 2) stays put with BN and
   drifts without it; BN also reaches a higher test accuracy sooner.

The convolutional net of claims 1-2 is the plain (shortcut-free) CIFAR net of the ResNet paper, with our
BatchNorm2d after every convolution, or with no normalization and a bias in every convolution instead (the bias
that BN makes redundant, Sec. 3.2). For a given seed the two nets start from the same convolution weights and see
the same batches. Claim 1 picks the plain net's learning rate from {0.01, 0.03, 0.1} on held-out training images;
claim 2's base rate 0.03 was the best of those for the plain net in a one-seed probe (steps to 70%). Images are
Fashion-MNIST averaged down to 14x14 to fit the CPU budget.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ...core.resnet import CifarResNet
from ...data import first
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from ...engine.train import build_optimizer, evaluate
from ...engine.trainer import Trainer
from .batch_norm import BatchNorm2d, estimate_population_statistics
from .models import SigmoidMLP

# ----------------------------------------------------------------------------- shared pieces



def small_images(ctx, n_train: int, n_test: int, img_size: int):
    """Fashion-MNIST (digits as fallback): a class-balanced training subset and the first test images, averaged
    down by an integer factor towards `img_size` (28 -> 14); 8x8 digits stay as they are."""
    data = ctx.dataset("fashion-mnist", fallback="digits")
    return downsample(data.subset(min(n_train, len(data.train)), seed=0, n_test=n_test), img_size)


def downsample(data, img_size: int):
    """`data` with its images averaged down by an integer factor towards `img_size` (none if already that small)."""
    factor = max(1, data.img_size // img_size)
    if factor == 1:
        return data
    pool = lambda d: TensorDataset(F.avg_pool2d(d.tensors[0], factor), d.tensors[1])  # noqa: E731
    return replace(data, train=pool(data.train), test=pool(data.test), img_size=data.img_size // factor)


def biased_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                bias: bool = False) -> nn.Conv2d:
    """A convolution with a bias b, starting at zero like BN's beta, for the net without BN (Sec. 3.2: with BN,
    beta takes the role of b)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=True)
    nn.init.zeros_(conv.bias)
    return conv


def conv_net(batch_norm: bool, cfg, data, seed: int) -> CifarResNet:
    """The plain CIFAR net of depth `cfg.depth`, with BN after every convolution or with none; for a given seed
    both start from the same convolution and classifier weights."""
    torch.manual_seed(seed)
    bn_net = CifarResNet(cfg.depth, data.num_classes, data.in_chans, cfg.width, residual=False,
                         norm_layer=BatchNorm2d)
    if batch_norm:
        return bn_net
    net = CifarResNet(cfg.depth, data.num_classes, data.in_chans, cfg.width, residual=False,
                      norm_layer=lambda channels: nn.Identity(), conv_layer=biased_conv)
    keys = net.state_dict().keys()
    net.load_state_dict({k: v for k, v in bn_net.state_dict().items() if k in keys}, strict=False)
    return net


def train_monitored(ctx, model: nn.Module, data, cfg, lr: float, seed: int, desc: str, look=None,
                    halve_every: int | None = None) -> dict:
    """SGD with momentum 0.9 at `lr` for `cfg.steps` steps, constant or halved every `halve_every` steps; returns the
    test accuracy on a fixed subset (and `look(model)`, if given) after updates 0, eval_every, 2 eval_every, ... and
    the last, and whether training diverged (a non-finite loss: the engine stops with a FloatingPointError before
    the update)."""
    looks = []

    def monitor(trainer) -> dict:
        accuracy = evaluate(model, data.test, device=ctx.device)["accuracy"]
        if look is not None:
            looks.append(look(model))
        return {"accuracy": accuracy}

    model.to(ctx.device)
    sgd = build_optimizer(model, "sgd", lr=lr, momentum=0.9)
    schedule = None if halve_every is None else torch.optim.lr_scheduler.StepLR(sgd, halve_every, gamma=0.5)
    trainer = Trainer(model, sgd, schedule, steps=cfg.steps, data=data.train, batch_size=cfg.batch_size,
                      evaluate=monitor, eval_every=cfg.eval_every, seed=seed, device=ctx.device,
                      progress=ctx.progress, desc=desc)
    try:
        trainer.fit()
        diverged = False
    except FloatingPointError:
        diverged = True
    return {"step": [e["step"] for e in trainer.evaluations], "accuracy": [e["accuracy"] for e in trainer.evaluations],
            "diverged": diverged, "looks": looks}


# ----------------------------------------------------------------------------- claim 1


ARMS = {"plain": (False, 1.0), "bn": (True, 1.0), "bn_x5": (True, 5.0)}     # name -> (batch_norm, lr multiplier)
ARM_LABELS = {"plain": "without BN", "bn": "BN-Baseline (same lr)", "bn_x5": "BN-x5 (5x lr)"}


def running_mean(values, width: int = 3) -> list[float]:
    """The mean of each evaluation and the `width - 1` before it (fewer at the start): one noisy evaluation
    neither sets a plateau nor reaches a target."""
    return [float(np.mean(values[max(0, i - width + 1):i + 1])) for i in range(len(values))]


def steps_to(run: dict, target: float, cap: int) -> int:
    """The first monitored step whose running-mean test accuracy is >= `target`; `cap` if it never gets there."""
    return next((s for s, a in zip(run["step"], running_mean(run["accuracy"])) if a >= target), cap)


@claim(
    paper="batch_norm",
    statement=("With BN a network reaches a given accuracy in far fewer training steps (Sec. 4.2.2, Fig. 2-3): "
               "BN-Baseline, at the learning rate of the net without BN, in less than half the steps (paper: "
               "13.3M vs 31.0M), and BN-x5, at 5x that rate, in 14x fewer (2.1M)."),
    criterion=("the target is the plain net's maximum test accuracy (Fig. 2: Inception's 72.2%), the best running "
               "mean of three evaluations, mean over seeds; the plain net's lr is the one of `lrs` with the highest "
               "such plateau on held-out training images (seed 0); BN-Baseline takes that lr and schedule (halved "
               "every `halve_every` steps), BN-x5 5x the lr halved 6x as often (Sec. 4.2.1); steps to target: the "
               "first evaluation whose running mean reaches it, `steps` if none; passes if bn's mean steps <= 1/2 "
               "of plain's and bn_x5's <= 1/3, and every plain seed has plateaued (its running mean `plateau_window` "
               "steps before the end within 1.5 points of its maximum: the last steps add little; otherwise the "
               "budget is too short and the run is void)"),
    quick=dict(depth=8, width=4, img_size=14, n_train=512, n_val=128, n_test=256, steps=8, batch_size=32,
               lrs=(0.03,), halve_every=4, eval_every=2, plateau_window=4, seeds=1),
    full=dict(depth=8, width=8, img_size=14, n_train=10000, n_val=2000, n_test=2000, steps=2400, batch_size=64,
              lrs=(0.01, 0.03, 0.1), halve_every=600, eval_every=25, plateau_window=500, seeds=3),
)
def fewer_steps_to_target(cfg, ctx) -> ClaimResult:
    full = ctx.dataset("fashion-mnist", fallback="digits")
    data, val = (downsample(d, cfg.img_size) for d in full.validation_split(cfg.n_train, cfg.n_val, cfg.n_test))
    plateau = lambda run: max(running_mean(run["accuracy"]))  # noqa: E731

    sweep = {}                                                  # the plain net's lr: best plateau on validation
    for lr in cfg.lrs:
        run = train_monitored(ctx, conv_net(False, cfg, val, 0), val, cfg, lr, 0, desc=f"plain lr {lr:g} (validation)",
                              halve_every=cfg.halve_every)
        sweep[lr] = {"plateau": plateau(run), "run": run}
    lr = max(cfg.lrs, key=lambda x: sweep[x]["plateau"])
    schedules = {"plain": (lr, cfg.halve_every), "bn": (lr, cfg.halve_every),
                 "bn_x5": (5 * lr, max(1, cfg.halve_every // 6))}

    curves = {arm: [] for arm in ARMS}
    for seed, arm in ctx.grid(cfg.seeds, ARMS):
        arm_lr, halve_every = schedules[arm]
        curves[arm].append(train_monitored(ctx, conv_net(ARMS[arm][0], cfg, data, seed), data, cfg, arm_lr, seed,
                                           desc=f"{arm} seed {seed}", halve_every=halve_every))
    plain_max = [plateau(run) for run in curves["plain"]]
    target = float(np.mean(plain_max))
    late = [next(a for s, a in zip(run["step"], running_mean(run["accuracy"])) if s >= cfg.steps - cfg.plateau_window)
            for run in curves["plain"]]            # where the plain net stood plateau_window steps before the end
    plateaued = all(best - before <= 1.5 for best, before in zip(plain_max, late))
    steps = {arm: [steps_to(run, target, cfg.steps) for run in runs] for arm, runs in curves.items()}
    mean = mean_over_seeds(steps)
    # a plain net whose maximum comes at step 0 never learned: no speed-up can be measured against it
    ratio = {arm: mean[arm] / mean["plain"] if mean["plain"] > 0 else None for arm in ("bn", "bn_x5")}
    passed = mean["plain"] > 0 and ratio["bn"] <= 1 / 2 and ratio["bn_x5"] <= 1 / 3 and plateaued
    metrics = {
        "target_accuracy": target,
        "plain_max_per_seed": plain_max,
        "plain_before_last_window_per_seed": late,
        "plain_plateaued": plateaued,
        "lr": {arm: a for arm, (a, _) in schedules.items()},
        "halve_every": {arm: h for arm, (_, h) in schedules.items()},
        "lr_sweep_val_plateau": {lr: v["plateau"] for lr, v in sweep.items()},
        "lr_sweep_val_curves": {lr: v["run"]["accuracy"] for lr, v in sweep.items()},
        "steps_to_target": mean,
        "steps_ratio_to_plain": ratio,
        "speedup": {arm: 1 / r if r else None for arm, r in ratio.items()},
        "steps_to_target_per_seed": steps,
        "reached_per_seed": {arm: [s < cfg.steps for s in v] for arm, v in steps.items()},
        "final_accuracy_per_seed": {arm: [r["accuracy"][-1] for r in runs] for arm, runs in curves.items()},
        "diverged_per_seed": {arm: [r["diverged"] for r in runs] for arm, runs in curves.items()},
        "accuracy_curves": {arm: {"step": runs[0]["step"], "accuracy": [r["accuracy"] for r in runs]}
                            for arm, runs in curves.items()},
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_steps_to_target(metrics, cfg),
                       notes=f"test accuracy on the first {len(data.test)} test images, {len(val.test)} held-out "
                             f"training images for the lr sweep, {data.img_size}x{data.img_size} inputs, plain "
                             f"CIFAR net of depth {cfg.depth}")


def plot_steps_to_target(metrics: dict, cfg):
    """Fig. 2 redrawn: test accuracy against training steps for the net without BN, BN-Baseline and BN-x5."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"plain": "tab:gray", "bn": "tab:blue", "bn_x5": "tab:red"}
    for arm, c in metrics["accuracy_curves"].items():
        for i, acc in enumerate(c["accuracy"]):
            n = len(acc)
            reached = sum(metrics["reached_per_seed"][arm])
            target = metrics["target_accuracy"]
            label = (f"{ARM_LABELS[arm]}: {metrics['steps_to_target'][arm]:.0f} steps "
                     f"({reached}/{len(c['accuracy'])} seeds reach {target:.1f}%)" if i == 0 else None)
            ax.plot(c["step"][:n], acc, color=colors[arm], alpha=0.9 if i == 0 else 0.4, label=label)
    ax.axhline(metrics["target_accuracy"], color="k", ls=":", lw=1, label="target: the plain net's maximum")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Steps to the plain net's maximum, {metrics['target_accuracy']:.1f}% (mean over {cfg.seeds} "
                 "seed(s)); cf. Fig. 2")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 2


@claim(
    paper="batch_norm",
    statement=("BN enables higher learning rates (Sec. 3.3, 4.2.1): a BN net trains well at a learning rate 10x the "
               "best one of the same net without BN, where the net without BN diverges or stays at chance."),
    criterion=("final test accuracy at the top learning rate (10x the base): BN mean over seeds >= 70% and every "
               "run without BN diverged (non-finite loss) or ended below 20%; and at the base rate the net "
               "without BN reaches >= 60% (mean), so the base rate is a usable one"),
    quick=dict(depth=8, width=4, img_size=14, n_train=512, n_test=256, steps=6, batch_size=32, lrs=(0.03, 0.3),
               eval_every=6, seeds=1),
    full=dict(depth=8, width=8, img_size=14, n_train=10000, n_test=1000, steps=300, batch_size=64,
              lrs=(0.03, 0.1, 0.3), eval_every=300, seeds=3),
)
def higher_learning_rate(cfg, ctx) -> ClaimResult:
    data = small_images(ctx, cfg.n_train, cfg.n_test, cfg.img_size)
    nets = {"plain": False, "bn": True}
    accuracy = {net: {lr: [] for lr in cfg.lrs} for net in nets}
    diverged = {net: {lr: [] for lr in cfg.lrs} for net in nets}
    for seed, net, lr in ctx.grid(cfg.seeds, nets, cfg.lrs):
        run = train_monitored(ctx, conv_net(nets[net], cfg, data, seed), data, cfg, lr, seed,
                              desc=f"{net} lr {lr} seed {seed}")
        diverged[net][lr].append(run["diverged"])
        accuracy[net][lr].append(float("nan") if run["diverged"] else run["accuracy"][-1])
    base, top = cfg.lrs[0], cfg.lrs[-1]
    chance = 100.0 / data.num_classes
    # a diverged run counts at chance accuracy in the means and the figure
    counted = {net: {lr: [chance if d else a for a, d in zip(accuracy[net][lr], diverged[net][lr])] for lr in cfg.lrs}
               for net in nets}
    mean = {net: mean_over_seeds(counted[net]) for net in nets}
    plain_fails = all(d or a < 20.0 for a, d in zip(accuracy["plain"][top], diverged["plain"][top]))
    passed = mean["bn"][top] >= 70.0 and plain_fails and mean["plain"][base] >= 60.0
    metrics = {
        "base_lr": base, "top_lr": top, "lr_ratio": top / base,
        "final_accuracy": mean,
        "final_accuracy_per_seed": accuracy,
        "diverged_per_seed": diverged,
        "plain_fails_at_top_lr": plain_fails,
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_accuracy_vs_lr(mean, diverged, cfg),
                       notes="a diverged run is counted at chance accuracy in the means")


def plot_accuracy_vs_lr(mean: dict, diverged: dict, cfg):
    """Final test accuracy against the learning rate, with and without BN; crosses mark diverged runs."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for net, color, label in (("plain", "tab:gray", "without BN"), ("bn", "tab:blue", "with BN")):
        lrs = list(cfg.lrs)
        ax.plot(lrs, [mean[net][lr] for lr in lrs], "o-", color=color, label=label)
        for lr in lrs:
            if any(diverged[net][lr]):
                ax.plot([lr], [mean[net][lr]], "x", color="k", ms=10)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (SGD, momentum 0.9)")
    ax.set_ylabel(f"test accuracy after {cfg.steps} steps (%)")
    ax.set_title("BN trains at learning rates where the plain net fails (x: diverged)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 3


PERCENTILES = (15.0, 50.0, 85.0)
PROBES = ("population", "running", "batch")


def sigmoid_input_percentiles(fixed: torch.Tensor, population: torch.Tensor, batch_size: int):
    """A look at the model: the {15, 50, 85}th percentiles of each last-hidden-layer sigmoid input over the fixed
    batch `fixed`, (probe, 3, width), for three versions of a copy of the model (all the same without BN):

    - "population": the inference network of Algorithm 2 at this point of training, BN with population statistics
      averaged over the training images `population` in mini-batches of `batch_size` (steps 9-11);
    - "running": eval mode with the moving averages kept during training (momentum 0.1, Sec. 3.1);
    - "batch": training mode, BN normalising with the fixed batch's own statistics (standardised by construction).
    """
    import copy

    q = torch.tensor(PERCENTILES) / 100
    batches = population.split(batch_size)

    def look(model: SigmoidMLP) -> np.ndarray:
        with torch.no_grad():
            nets = {"population": estimate_population_statistics(copy.deepcopy(model), batches),
                    "running": copy.deepcopy(model).eval(), "batch": copy.deepcopy(model).train()}
            return np.stack([torch.quantile(nets[p].sigmoid_inputs(fixed)[-1], q, dim=0).numpy() for p in PROBES])

    return look


def drift(looks: np.ndarray, start: int = 0) -> float:
    """Max - min over the looks from `start` on of each unit's {15, 50, 85}th percentile, mean over the three
    percentiles and the units: how far the distribution of a sigmoid input moves during training. looks:
    (T, 3, width)."""
    looks = looks[start:]
    return float((looks.max(0) - looks.min(0)).mean())


def median_range(looks: np.ndarray, start: int) -> float:
    """The first run's measure: max - min of each unit's median sigmoid input over the looks from `start` on,
    mean over the units."""
    median = looks[start:, 1]                                              # (T', width)
    return float((median.max(0) - median.min(0)).mean())


@claim(
    paper="batch_norm",
    statement=("MNIST, 3 hidden layers of 100 sigmoid units (Sec. 4.1, Fig. 1): in the inference network (BN with "
               "the population statistics of Algorithm 2) the distribution of a last-hidden-layer sigmoid input "
               "({15, 50, 85}th percentiles on a fixed batch) stays stable over training, without BN it drifts; the "
               "BN net also reaches a higher test accuracy sooner."),
    criterion=("drift = max - min over all looks (every 75 steps, step 0 to the end) of each of the {15, 50, 85}th "
               "percentiles of each last-hidden-layer unit's input on a fixed batch, mean over the 3 percentiles and "
               "the 100 units; the BN net probed in eval mode with population statistics re-estimated at each look "
               "(Algorithm 2: averages over 3,000 training images in batches of 60, weights fixed). Over 5 seeds: "
               "mean BN drift <= 1/2 of mean drift without BN, and BN drift < drift without BN in every seed (the "
               "moving-average and batch-statistics probes and the test accuracies are reported, not judged)"),
    quick=dict(steps=20, batch_size=60, lr=0.1, n_test=256, n_fixed=60, n_population=120, eval_every=5, seeds=1),
    full=dict(steps=3000, batch_size=60, lr=0.1, n_test=1000, n_fixed=600, n_population=3000, eval_every=75,
              seeds=5),
)
def mnist_sigmoid_distributions(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    fixed = data.test.tensors[0][-cfg.n_fixed:].to(ctx.device)            # the fixed batch: the last test images,
    data = replace(data, test=first(data.test, cfg.n_test))               # outside the test subset
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    population = data.train.tensors[0][order[:cfg.n_population]].to(ctx.device)   # training images, fixed
    look = sigmoid_input_percentiles(fixed, population, cfg.batch_size)
    nets = {"plain": False, "bn": True}
    drifts = {p: {net: [] for net in nets} for p in PROBES}
    second_half = {p: {net: [] for net in nets} for p in PROBES}
    runs = {net: [] for net in nets}
    for seed, net in ctx.grid(cfg.seeds, nets):
        torch.manual_seed(seed)
        model = SigmoidMLP(data.num_classes, data.in_chans, data.img_size, batch_norm=nets[net])
        run = train_monitored(ctx, model, data, cfg, cfg.lr, seed, desc=f"{net} seed {seed}", look=look)
        looks = np.stack(run.pop("looks"))                                 # (T, probe, 3, width)
        for i, p in enumerate(PROBES):
            drifts[p][net].append(drift(looks[:, i]))
            second_half[p][net].append(median_range(looks[:, i], len(looks) // 2))
        run["percentiles"] = looks
        runs[net].append(run)
    mean = {p: mean_over_seeds(d) for p, d in drifts.items()}
    judged = drifts["population"]
    every_seed = all(b < a for a, b in zip(judged["plain"], judged["bn"]))
    passed = mean["population"]["bn"] <= 0.5 * mean["population"]["plain"] and every_seed
    metrics = {
        "drift": mean,
        "drift_ratio_bn_to_plain": {p: m["bn"] / m["plain"] for p, m in mean.items()},
        "drift_per_seed": drifts,
        "bn_below_plain_in_every_seed": every_seed,
        "median_range_second_half": {p: mean_over_seeds(d) for p, d in second_half.items()},
        "final_accuracy": {net: float(np.mean([r["accuracy"][-1] for r in rs])) for net, rs in runs.items()},
        "final_accuracy_per_seed": {net: [r["accuracy"][-1] for r in rs] for net, rs in runs.items()},
        "diverged_per_seed": {net: [r["diverged"] for r in rs] for net, rs in runs.items()},
        "accuracy_curves": {net: {"step": rs[0]["step"], "accuracy": [r["accuracy"] for r in rs]}
                            for net, rs in runs.items()},
        "unit0_percentiles_seed0": {net: {p: {"step": rs[0]["step"],
                                              **{f"p{q:.0f}": rs[0]["percentiles"][:, i, j, 0].tolist()
                                                 for j, q in enumerate(PERCENTILES)}}
                                          for i, p in enumerate(PROBES)}
                                    for net, rs in runs.items()},
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_figure1(metrics),
                       notes=f"the percentiles are over a fixed batch of {cfg.n_fixed} test images; unit 0 of the "
                             "last hidden layer is the 'typical sigmoid' of the figure; population statistics over "
                             f"{cfg.n_population} training images, re-estimated at every look")


def plot_figure1(metrics: dict):
    """Fig. 1 redrawn: (a) test accuracy against steps with and without BN, (b, c) the {15, 50, 85}th
    percentiles of one last-hidden-layer sigmoid input over training in the inference network, without BN (b)
    and with BN (c, population statistics; dashed: the median with the moving averages). The titles give the drift,
    mean over units and seeds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colors = {"plain": "tab:gray", "bn": "tab:blue"}
    labels = {"plain": "without BN", "bn": "with BN"}
    for net, c in metrics["accuracy_curves"].items():
        acc = np.mean([a for a in c["accuracy"] if len(a) == len(c["step"])] or c["accuracy"][:1], axis=0)
        axes[0].plot(c["step"][:len(acc)], acc, color=colors[net], label=labels[net])
    axes[0].set_title("(a) test accuracy (mean over seeds)")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend()
    drift = metrics["drift"]["population"]
    for ax, net, title in ((axes[1], "plain", "(b) without BN"), (axes[2], "bn", "(c) with BN")):
        p = metrics["unit0_percentiles_seed0"][net]["population"]
        ax.fill_between(p["step"], p["p15"], p["p85"], color=colors[net], alpha=0.25, label="15th-85th percentile")
        ax.plot(p["step"], p["p50"], color=colors[net], label="median")
        if net == "bn":
            r = metrics["unit0_percentiles_seed0"][net]["running"]
            ax.plot(r["step"], r["p50"], "--", color="tab:purple", lw=1, label="median, moving averages")
        ax.set_title(f"{title}: drift {drift[net]:.2f}")
        ax.set_xlabel("training step")
        ax.set_ylabel("sigmoid input (inference network)")
        ax.legend(loc="lower right", fontsize=8)
    probes = [metrics["unit0_percentiles_seed0"][n]["population"] for n in ("plain", "bn")]
    lo, hi = min(min(p["p15"]) for p in probes), max(max(p["p85"]) for p in probes)
    for ax in axes[1:]:
        ax.set_ylim(lo - 0.2, hi + 0.2)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
