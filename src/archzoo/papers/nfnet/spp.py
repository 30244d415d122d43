"""Signal Propagation Plots (Brock, De & Smith 2021, arXiv:2101.08692, Sec. 3, Fig. 1-2).

An SPP follows the residual stream h (B, C, H, W) at the end of every residual block of a network at
initialization, fed a batch of unit Gaussian inputs, through two statistics:

- the average channel squared mean, mean_c (mean_{b,y,x} h_{bcyx})^2: a growing value is a *mean shift*, every
  sample's features pointing the same way (what ReLU with He init does without BatchNorm, Sec. 4.1);
- the average channel variance, mean_c var_{b,y,x} h_{bcyx}: the scale of the signal, which in a BN-ReLU ResNet grows
  linearly within a stage and is reset at each transition (Sec. 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ...core.checks import check_shape


def channel_statistics(h: Tensor) -> tuple[float, float]:
    """(average channel squared mean, average channel variance) of a (B, C, H, W) activation (Sec. 3)."""
    check_shape(h, "B C H W", name="activation")
    var, mean = torch.var_mean(h.double(), dim=(0, 2, 3), unbiased=False)   # per channel, (C,)
    return float((mean ** 2).mean()), float(var.mean())


@torch.no_grad()
def signal_propagation(model: nn.Module, x: Tensor, blocks: Sequence[nn.Module] | None = None) -> dict:
    """Run `model` on `x` and return the SPP statistics of the output of every residual block, in order:
    {"squared_mean": [...], "variance": [...]} (one value per block).

    `blocks` defaults to `model.blocks`. The model runs in training mode, as at initialization, so that BatchNorm
    uses batch statistics; its buffers (BN running statistics) are restored afterwards and its mode too.
    Stochastic depth and dropout are live in training mode: build the model without them for a clean plot.
    """
    blocks = list(model.blocks if blocks is None else blocks)
    if not blocks:
        raise ValueError("signal_propagation needs at least one residual block")
    stats: list[tuple[float, float]] = []
    hooks = [b.register_forward_hook(lambda _m, _inp, out: stats.append(channel_statistics(out))) for b in blocks]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    if len(stats) != len(blocks):
        raise ValueError(f"expected one output per block ({len(blocks)}), got {len(stats)}: is every block used once?")
    return {"squared_mean": [s[0] for s in stats], "variance": [s[1] for s in stats]}


def plot_signal_propagation(curves: dict[str, dict], expected_variance: Sequence[float] | None = None,
                            stage_ends: Sequence[int] = (), title: str | None = None, linear: Sequence[str] = ()):
    """Fig. 1-2 of arXiv:2101.08692 from `{label: signal_propagation(...)}`: average channel squared mean and average
    channel variance against block index, on log axes; `expected_variance` adds the analytic beta^2 curve and
    `stage_ends` (block indices, 1-based) marks the end of each stage with black dots. The curves named in `linear`
    get a third panel, their variance on a linear axis (for a close look when another curve explodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("squared_mean", "Average channel squared mean", "log", list(curves)),
              ("variance", "Average channel variance", "log", list(curves))]
    if linear:
        panels.append(("variance", "Average channel variance (linear axis)", "linear", list(linear)))
    colors = dict(zip(curves, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    for ax, (key, ylabel, scale, labels) in zip(axes, panels):
        for label in labels:
            y = np.asarray(curves[label][key], dtype=float)
            ax.plot(np.arange(1, len(y) + 1), y, marker=".", color=colors.get(label), label=label)
            ends = [i for i in stage_ends if 1 <= i <= len(y)]
            ax.plot(ends, y[np.asarray(ends, dtype=int) - 1], "k.", markersize=9)
        if key == "variance" and expected_variance is not None:
            ax.plot(np.arange(1, len(expected_variance) + 1), expected_variance, "k--", lw=1,
                    label=r"analytic $\beta^2$")
        ax.set_yscale(scale)
        ax.set_xlabel("Residual block")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
