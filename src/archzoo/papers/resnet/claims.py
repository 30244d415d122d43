"""The degradation problem and its cure (He et al. 2015, arXiv:1512.03385, Sec. 4.2, Fig. 1 and Fig. 6).

Plain nets of increasing depth reach *higher* training error, which overfitting cannot explain; the same nets
with identity shortcuts reach lower training error as they get deeper. We train CIFAR-style 6n+2 nets on
Fashion-MNIST, a shallow and a deep depth, each plain and residual. Residual and plain twins have exactly the
same parameters (option A shortcuts have none) and, for a given seed, start from the same weights and see the
same batches: the shortcut is the only difference.
"""

from __future__ import annotations

import numpy as np

from ...core.resnet import CifarResNet
from ...data import first
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from ...engine.train import evaluate

NETS = {"plain_shallow": ("shallow", False), "plain_deep": ("deep", False),
        "res_shallow": ("shallow", True), "res_deep": ("deep", True)}      # name -> (depth, residual)



def smoothed_curve(history: list[dict], points: int, window: int) -> tuple[list[int], list[float]]:
    """The training loss of a history as a running mean over `window` steps, at `points` evenly spaced steps."""
    loss = np.array([h["loss"] for h in history])
    running = np.convolve(loss, np.ones(window) / window, mode="valid")         # running[i]: mean of steps i..i+w-1
    at = np.unique(np.linspace(0, len(running) - 1, min(points, len(running))).round().astype(int))
    return (at + window).tolist(), running[at].tolist()                          # 1-based step that ends the window


@claim(
    paper="resnet",
    statement=("Degradation (Sec. 4.2, Fig. 1 and 6, CIFAR-10): the deeper plain net has higher training error than "
               "the shallower plain net, and the residual net of the deeper depth has lower training error than both."),
    criterion=("mean final training error over seeds (eval mode, fixed subset of the training set): "
               "plain_deep >= plain_shallow + 1 point, res_deep < plain_deep, and res_deep < plain_shallow"),
    quick=dict(depths=(8, 14), width=4, n_train=256, n_eval=256, n_test=256, steps=4, batch_size=32, lr=0.1,
               warmup_steps=2, seeds=1),
    demo=dict(depths=(8, 26), width=8, n_train=5000, n_eval=2000, n_test=1000, steps=150, batch_size=64, lr=0.1,
              warmup_steps=15, seeds=1),
    full=dict(depths=(8, 26), width=8, n_train=5000, n_eval=5000, n_test=2000, steps=300, batch_size=64, lr=0.1,
              warmup_steps=30, seeds=3),
)
def degradation(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    data = data.subset(min(cfg.n_train, len(data.train)), seed=0, n_test=cfg.n_test)
    train_eval = first(data.train, cfg.n_eval)                      # the same training images for every net
    depth = dict(zip(("shallow", "deep"), cfg.depths))
    train_error = {net: [] for net in NETS}
    test_error = {net: [] for net in NETS}
    histories = {net: [] for net in NETS}
    for seed, net in ctx.grid(cfg.seeds, NETS):
        d, residual = NETS[net]
        ctx.seed(seed)                                              # twins start from the same weights
        model = CifarResNet(depth[d], num_classes=data.num_classes, in_chans=data.in_chans, width=cfg.width,
                            residual=residual)
        fit = ctx.fit_and_eval(model, data, steps=cfg.steps, batch_size=cfg.batch_size, seed=seed, eval_train=False,
                               optimizer="sgd", lr=cfg.lr, momentum=0.9, weight_decay=1e-4,
                               warmup_steps=cfg.warmup_steps, schedule="cosine",
                               desc=f"{net.replace('_', '-')}-{depth[d]} seed {seed}")
        train_error[net].append(evaluate(model, train_eval, device=ctx.device)["error"])
        test_error[net].append(fit.error)
        histories[net].append(fit.history)

    mean = mean_over_seeds(train_error)
    passed = (mean["plain_deep"] >= mean["plain_shallow"] + 1.0 and mean["res_deep"] < mean["plain_deep"]
              and mean["res_deep"] < mean["plain_shallow"])
    window = max(1, cfg.steps // 20)
    curves = {}
    for net, hs in histories.items():                               # mean over seeds of the smoothed loss
        per_seed = [smoothed_curve(h, points=60, window=window) for h in hs]
        curves[net] = {"step": per_seed[0][0], "loss": np.mean([c[1] for c in per_seed], axis=0).tolist()}
    metrics = {
        "depths": depth,
        "train_error": mean,
        "test_error": mean_over_seeds(test_error),
        "train_error_per_seed": train_error,
        "test_error_per_seed": test_error,
        "train_loss_curves": curves,
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_training_curves(curves, depth, mean),
                       notes=f"training error on {len(train_eval)} training images, test error on {len(data.test)}; "
                             f"loss curves: running mean over {window} steps, mean over {cfg.seeds} seed(s)")


def plot_training_curves(curves: dict, depth: dict, train_error: dict):
    """Fig. 1 / Fig. 6 redrawn: training loss against steps, plain nets dashed (left), ResNets solid (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colors = {"shallow": "tab:blue", "deep": "tab:red"}
    for ax, (kind, style) in zip(axes, (("plain", "--"), ("res", "-"))):
        for d in ("shallow", "deep"):
            net = f"{kind}_{d}"
            label = f"{'plain' if kind == 'plain' else 'ResNet'}-{depth[d]} (train error {train_error[net]:.1f}%)"
            ax.plot(curves[net]["step"], curves[net]["loss"], style, color=colors[d], label=label)
        ax.set_title("plain nets" if kind == "plain" else "residual nets")
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss (running mean)")
    fig.suptitle("Training loss of plain nets (dashed) and ResNets (solid) at two depths (cf. Fig. 1 and Fig. 6)")
    fig.tight_layout()
    return fig
