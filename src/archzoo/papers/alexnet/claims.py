"""ReLUs train faster than tanh units (Krizhevsky, Sutskever & Hinton 2012, Sec. 3.1, Fig. 1).

Fig. 1: a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster than the same net
with tanh neurons; "the learning rates for each network were chosen independently to make training as fast as
possible" and "no regularization of any kind was employed". We follow that protocol on Fashion-MNIST:

- the net is a four-layer CNN (`fig1_net`: three 5x5 convolutions of 32, 32 and 64 kernels, each followed by the
  nonlinearity and a 3/2 overlapping max pool, and one linear layer), the paper's Fig. 1 net being unspecified
  beyond "four-layer";
- each nonlinearity gets its own learning rate: on seed 0 both nets train at every rate of a sweep, and the rate
  that reaches the threshold in the fewest steps is that net's; the other seeds train at it;
- SGD with the paper's momentum 0.9 (Sec. 5), constant rate, no dropout, no weight decay; the twins of a seed see
  the same batches in the same order and start from the same random draws.

The weights do not use the paper's N(0, 0.01^2) (Sec. 5): scaled down to 28x28 the fan-ins are far smaller, and
with that fixed standard deviation neither net leaves chance level (README.md). Both nets start from the
variance-preserving N(0, gain^2 / fan_in) with the gain of their own nonlinearity (sqrt(2) for ReLU, 5/3 for tanh)
and zero biases, so each starts as well as it can.

The first run of this claim used `alexnet_small` (eight layers) with one learning rate for both nets; its record
is in git history and on the page.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ...engine.claims import ClaimResult, claim
from ...engine.train import train
from .models import ACTIVATIONS as ACTIVATION_LAYERS
from .models import conv_out, overlapping_max_pool

ACTIVATIONS = ("relu", "tanh")


def init_for_activation(model: nn.Module, activation: str) -> nn.Module:
    """Every weight from N(0, gain^2 / fan_in) with the gain of the model's nonlinearity, every bias 0."""
    gain = nn.init.calculate_gain(activation)                         # sqrt(2) for relu, 5/3 for tanh
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, mean=0.0, std=gain / math.sqrt(m.weight[0].numel()))
            nn.init.zeros_(m.bias)
    return model


def fig1_net(activation: str, in_chans: int = 1, num_classes: int = 10, img_size: int = 28) -> nn.Sequential:
    """A four-layer CNN in the manner of Fig. 1 (Sec. 3.1), sized for 28x28 images: 3 x [5x5 conv (32, 32, 64
    kernels, padding 2) -> nonlinearity -> 3/2 overlapping max pool (Sec. 3.4)] -> linear. Maps 28 -> 13 -> 6 -> 2."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    layers, width, size = [], in_chans, img_size
    for out in (32, 32, 64):
        layers += [nn.Conv2d(width, out, 5, padding=2), ACTIVATION_LAYERS[activation](), overlapping_max_pool()]
        width, size = out, conv_out(size, 3, 2)
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * size * size, num_classes))
    return init_for_activation(net, activation)


def error_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
    """Cross-entropy, and the error (%) on the batch, measured by the forward pass that the update uses."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits, y), {"error": 100.0 * float((logits.argmax(1) != y).float().mean())}


def running_error(history: list[dict], window: int) -> np.ndarray:
    """Training error on the stream: the mean of the last `window` batches' errors (fewer in the first steps)."""
    errors = np.array([h["error"] for h in history])
    sums = np.cumsum(errors)
    counts = np.minimum(np.arange(1, len(errors) + 1), window)
    return (sums - np.concatenate([np.zeros(window), sums[:-window]])[:len(errors)]) / counts


def steps_to(curve: np.ndarray, threshold: float, window: int) -> int | None:
    """The first step (1-based) at which a full window's running error is <= threshold, None if never."""
    hits = np.flatnonzero(curve[window - 1:] <= threshold)
    return int(hits[0]) + window if len(hits) else None


def at_28x28(data):
    """Fashion-MNIST as it is; the digits fallback (8x8) upsampled bilinearly to the 28x28 that the net expects."""
    x, y = data.train.tensors
    if x.shape[-2:] == (28, 28):
        return data
    return replace(data, train=TensorDataset(F.interpolate(x, size=(28, 28), mode="bilinear"), y), img_size=28)


@claim(
    paper="alexnet",
    statement=("A four-layer CNN with ReLUs reaches 25% training error several times faster than the same network "
               "with tanh units, each at the learning rate that makes it fastest (Sec. 3.1, Fig. 1: six times "
               "faster on CIFAR-10)."),
    criterion=("steps to reach 25% training error (running mean of the last `window` batch errors on the training "
               "stream; a net that never gets there counts as `steps`, the cap), each nonlinearity at its own "
               "fastest learning rate from `lrs` (chosen on seed 0), mean over 3 seeds: "
               "ReLU's mean <= 1/3 of tanh's mean"),
    quick=dict(steps=4, batch_size=8, lrs=(0.01, 0.03), window=2, threshold=25.0, seeds=2),
    full=dict(steps=600, batch_size=64, lrs=(0.003, 0.01, 0.03), window=20, threshold=25.0, seeds=3),
)
def relu_trains_faster_than_tanh(cfg, ctx) -> ClaimResult:
    data = at_28x28(ctx.dataset("fashion-mnist", fallback="digits"))

    def run(act: str, lr: float, seed: int) -> tuple[int, bool, np.ndarray]:
        ctx.seed(seed)                                               # the twins draw the same random numbers
        model = fig1_net(act, in_chans=data.in_chans, num_classes=data.num_classes)
        try:
            result = train(model, data.train, steps=cfg.steps, batch_size=cfg.batch_size, loss_fn=error_loss,
                           optimizer="sgd", lr=lr, momentum=0.9, weight_decay=0.0, schedule="constant", seed=seed,
                           device=ctx.device, progress=ctx.progress, desc=f"{act} lr {lr:g} seed {seed}")
        except FloatingPointError:                                   # diverged: never reaches the threshold
            return cfg.steps, False, np.full(cfg.steps, 100.0)
        curve = running_error(result.history, cfg.window)
        hit = steps_to(curve, cfg.threshold, cfg.window)
        return (hit if hit is not None else cfg.steps), hit is not None, curve

    sweep = {act: {lr: run(act, lr, 0) for lr in cfg.lrs} for act in ACTIVATIONS}
    best_lr = {act: min(cfg.lrs, key=lambda lr: (sweep[act][lr][0], sweep[act][lr][2][-1])) for act in ACTIVATIONS}
    runs = {act: [sweep[act][best_lr[act]], *(run(act, best_lr[act], s) for s in range(1, cfg.seeds))]
            for act in ACTIVATIONS}
    steps = {act: [r[0] for r in rs] for act, rs in runs.items()}
    reached = {act: [r[1] for r in rs] for act, rs in runs.items()}
    curves = {act: [r[2] for r in rs] for act, rs in runs.items()}

    mean_steps = {act: float(np.mean(s)) for act, s in steps.items()}
    passed = mean_steps["relu"] <= mean_steps["tanh"] / 3
    metrics = {
        "threshold": cfg.threshold,
        "best_lr": best_lr,
        "sweep_steps_to_threshold_seed0": {act: {str(lr): r[0] for lr, r in rs.items()} for act, rs in sweep.items()},
        "sweep_final_running_error_seed0": {act: {str(lr): float(r[2][-1]) for lr, r in rs.items()}
                                            for act, rs in sweep.items()},
        "steps_to_threshold": mean_steps,
        "steps_to_threshold_per_seed": steps,
        "reached_threshold_per_seed": reached,
        "speedup_tanh_over_relu": mean_steps["tanh"] / mean_steps["relu"],
        "speedup_per_seed": [t / r for r, t in zip(steps["relu"], steps["tanh"])],
        "final_running_error": {act: float(np.mean([c[-1] for c in cs])) for act, cs in curves.items()},
        "steps_to_15_percent_per_seed": {act: [steps_to(c, 15.0, cfg.window) for c in cs]
                                         for act, cs in curves.items()},
        "running_error_curves": {act: [np.round(c, 2).tolist() for c in cs] for act, cs in curves.items()},
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_fig1(curves, mean_steps, reached, best_lr, cfg),
                       notes=f"training error: running mean over the last {cfg.window} batches "
                             f"({cfg.window * cfg.batch_size} images) of the error of each update's forward pass; "
                             f"learning rates: ReLU {best_lr['relu']:g}, tanh {best_lr['tanh']:g} "
                             f"(fastest of {', '.join(f'{lr:g}' for lr in cfg.lrs)} on seed 0)")


def plot_fig1(curves: dict, mean_steps: dict, reached: dict, best_lr: dict, cfg):
    """Fig. 1 redrawn: training error against steps, ReLU solid, tanh dashed, the 25% line dotted."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    seeds = len(curves["relu"])
    for act, style in (("relu", "-"), ("tanh", "--")):
        x = np.arange(1, len(curves[act][0]) + 1)
        if seeds > 1:
            for i, c in enumerate(curves[act]):
                ax.plot(x, c, style, color="black", lw=0.6, alpha=0.35, label=None if i else f"{act}, each seed")
        capped = sum(not r for r in reached[act])
        note = f", {capped} of {seeds} never (counted as {cfg.steps})" if capped else ""
        ax.plot(x, np.mean(curves[act], axis=0), style, color="tab:blue" if act == "relu" else "tab:red", lw=2,
                label=f"{'ReLU' if act == 'relu' else 'tanh'} (lr {best_lr[act]:g}): {mean_steps[act]:.0f} steps to "
                      f"{cfg.threshold:g}%{note}")
    ax.axhline(cfg.threshold, ls=":", color="gray")
    ax.set_xlabel(f"step (batch {cfg.batch_size})")
    ax.set_ylabel(f"training error, % (last {cfg.window} batches)")
    ax.set_ylim(0, 100)
    ax.set_title(f"four-layer CNN on Fashion-MNIST, ReLU vs tanh (mean of {seeds} seed{'s' * (seeds > 1)})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
