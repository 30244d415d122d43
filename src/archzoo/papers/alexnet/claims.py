"""ReLUs train faster than tanh units (Krizhevsky, Sutskever & Hinton 2012, Sec. 3.1, Fig. 1).

Fig. 1: a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster than the same net
with tanh neurons. We train `alexnet_small` twice per seed on Fashion-MNIST, once with ReLUs and once with tanh,
and count the steps each needs to reach 25% error on its own training stream. The twins see the same batches
in the same order and start from the same random draws; only the nonlinearity (and the gain that goes with it)
differs. As in Fig. 1 there is no regularization of any kind: no dropout, no weight decay.

The SGD settings are the paper's (Sec. 5), the same for both nets: momentum 0.9 and learning rate 0.01, kept
constant, on batches of 64 (the paper's 128 halved to fit the CPU budget). The weights do not use the paper's
N(0, 0.01^2) initialisation (Sec. 5): scaled down to 28x28 with a quarter of the kernels, the net's fan-ins are
4-36x smaller, and with that fixed standard deviation neither net leaves chance level within 1,500 steps (we tried
learning rates 0.003-0.1, with and without the biases of 1). Both nets start instead from the variance-preserving
He/LeCun initialisation N(0, gain^2 / fan_in) with the gain of their own nonlinearity (sqrt(2) for ReLU, 5/3 for
tanh) and zero biases, so each starts as well as it can.
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
from .models import AlexNet, alexnet_small

ACTIVATIONS = ("relu", "tanh")


def init_for_activation(model: AlexNet) -> AlexNet:
    """Every weight from N(0, gain^2 / fan_in) with the gain of the model's nonlinearity, every bias 0."""
    gain = nn.init.calculate_gain(model.activation)                  # sqrt(2) for relu, 5/3 for tanh
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, mean=0.0, std=gain / math.sqrt(m.weight[0].numel()))
            nn.init.zeros_(m.bias)
    return model


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
    statement=("A network with ReLUs reaches 25% training error several times faster than the same network with "
               "tanh units (Sec. 3.1, Fig. 1: six times faster on CIFAR-10)."),
    criterion=("steps to reach 25% training error (running mean of the last `window` batch errors on the training "
               "stream; a net that never gets there counts as `steps`, the cap), mean over 3 seeds: "
               "ReLU's mean <= 1/3 of tanh's mean"),
    quick=dict(steps=4, batch_size=8, lr=0.01, window=2, threshold=25.0, seeds=1),
    full=dict(steps=250, batch_size=64, lr=0.01, window=20, threshold=25.0, seeds=3),
)
def relu_trains_faster_than_tanh(cfg, ctx) -> ClaimResult:
    data = at_28x28(ctx.dataset("fashion-mnist", fallback="digits"))
    steps = {act: [] for act in ACTIVATIONS}                         # to `threshold`, the cap if never reached
    reached = {act: [] for act in ACTIVATIONS}
    curves = {act: [] for act in ACTIVATIONS}
    for seed, act in ctx.grid(cfg.seeds, ACTIVATIONS):
        ctx.seed(seed)                                               # the twins draw the same random numbers
        model = init_for_activation(alexnet_small(num_classes=data.num_classes, in_chans=data.in_chans,
                                                  activation=act, dropout=0.0))
        result = train(model, data.train, steps=cfg.steps, batch_size=cfg.batch_size, loss_fn=error_loss,
                       optimizer="sgd", lr=cfg.lr, momentum=0.9, weight_decay=0.0, schedule="constant", seed=seed,
                       device=ctx.device, progress=ctx.progress, desc=f"{act} seed {seed}")
        curve = running_error(result.history, cfg.window)
        hit = steps_to(curve, cfg.threshold, cfg.window)
        steps[act].append(hit if hit is not None else cfg.steps)
        reached[act].append(hit is not None)
        curves[act].append(curve)

    mean_steps = {act: float(np.mean(s)) for act, s in steps.items()}
    passed = mean_steps["relu"] <= mean_steps["tanh"] / 3
    metrics = {
        "threshold": cfg.threshold,
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
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_fig1(curves, mean_steps, reached, cfg),
                       notes=f"training error: running mean over the last {cfg.window} batches "
                             f"({cfg.window * cfg.batch_size} images) of the error of each update's forward pass")


def plot_fig1(curves: dict, mean_steps: dict, reached: dict, cfg):
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
                label=f"{'ReLU' if act == 'relu' else 'tanh'}: {mean_steps[act]:.0f} steps to {cfg.threshold:g}%{note}")
    ax.axhline(cfg.threshold, ls=":", color="gray")
    ax.set_xlabel(f"step (batch {cfg.batch_size})")
    ax.set_ylabel(f"training error, % (last {cfg.window} batches)")
    ax.set_ylim(0, 100)
    ax.set_title(f"alexnet_small on Fashion-MNIST, ReLU vs tanh (mean of {seeds} seed{'s' * (seeds > 1)})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
