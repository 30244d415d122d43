"""Micro-batch training: GN+WS at 2 images per batch against BN at 32 (Qiao et al. 2019, arXiv:1903.10520, Sec. 5).

The paper trains ResNets on ImageNet with 1 image per GPU using GN+WS and matches (or beats) BN trained with large
batches, while GN alone stays behind; its training curves show GN+WS reaching a lower training loss than GN.
We run the same comparison on Fashion-MNIST with a small CIFAR ResNet: BN at 32 images per batch, GN and GN+WS
at 2, every run seeing the same number of training images (steps = samples / B) with the learning rate scaled
linearly with the batch (0.1 B / 32, as group_norm's claim). For a given seed the three nets start from the same
convolution weights and see the same images in the same order; GN and GN+WS differ by WS alone, BN and GN by the
normalization layer alone.
"""

from __future__ import annotations

import numpy as np

from ...core.resnet import CifarResNet
from ...data import first
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from ...engine.train import evaluate
from ..group_norm.models import cifar_resnet_gn
from .models import cifar_resnet_gn_ws

ARMS = {"bn": "large", "gn": "micro", "gn_ws": "micro"}           # arm -> which batch size it trains with
LABELS = {"bn": "BN", "gn": "GN", "gn_ws": "GN+WS"}



def make_net(arm: str, cfg, num_classes: int, in_chans: int) -> CifarResNet:
    """The claim's CifarResNet with BN, GN or GN+WS; gamma = 0 in every block's last norm in all three."""
    kw = dict(num_classes=num_classes, in_chans=in_chans, width=cfg.width, zero_init_residual=True)
    if arm == "bn":
        return CifarResNet(cfg.depth, **kw)
    if arm == "gn":
        return cifar_resnet_gn(cfg.depth, cfg.groups, **kw)
    return cifar_resnet_gn_ws(cfg.depth, cfg.groups, **kw)


def loss_curve(history: list[dict], batch_size: int, window_samples: int, points: int) -> tuple[list, list]:
    """The training loss as a running mean over `window_samples` images, at `points` values of images seen."""
    loss = np.array([h["loss"] for h in history])
    window = max(1, window_samples // batch_size)
    running = np.convolve(loss, np.ones(window) / window, mode="valid")        # running[i]: steps i .. i+w-1
    at = np.unique(np.linspace(0, len(running) - 1, min(points, len(running))).round().astype(int))
    return ((at + window) * batch_size).tolist(), running[at].tolist()


@claim(
    paper="weight_standardization",
    statement=("GN+WS at 1-2 images per batch matches BN at a large batch, and reaches a lower training loss than GN "
               "alone (Sec. 5: ResNets on ImageNet with 1 image per GPU, GN+WS matches large-batch BN, GN does not)."),
    criterion=("mean over seeds, every run seeing the same number of images: test error of GN+WS (batch 2) <= test "
               "error of BN (batch 32) + 1.5 points, and training loss of GN+WS < training loss of GN (both batch 2), "
               "the training loss being the cross-entropy on a fixed set of training images after training"),
    quick=dict(depth=8, width=4, groups=2, micro_batch=2, large_batch=32, samples=64, n_train=512, n_eval=128,
               n_test=128, base_lr=0.1, warmup=0.05, weight_decay=1e-4, seeds=1),
    full=dict(depth=8, width=8, groups=4, micro_batch=2, large_batch=32, samples=6000, n_train=3000, n_eval=2000,
              n_test=5000, base_lr=0.1, warmup=0.05, weight_decay=1e-4, seeds=3),
)
def micro_batch_gn_ws(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    data = data.subset(min(cfg.n_train, len(data.train)), seed=0, n_test=cfg.n_test)
    train_eval = first(data.train, cfg.n_eval)                           # training images, the same for every net
    batch = {"large": cfg.large_batch, "micro": cfg.micro_batch}
    test_error, train_loss, histories = ({arm: [] for arm in ARMS} for _ in range(3))
    for seed, arm in ctx.grid(cfg.seeds, ARMS):
        b = batch[ARMS[arm]]
        steps = max(1, cfg.samples // b)                                 # the same number of images seen
        ctx.seed(seed)                                                   # the three nets start from the same weights
        model = make_net(arm, cfg, data.num_classes, data.in_chans)
        fit = ctx.fit_and_eval(model, data, steps=steps, batch_size=b, seed=seed, eval_train=False,
                               optimizer="sgd", lr=cfg.base_lr * b / 32, momentum=0.9,     # linear scaling rule
                               weight_decay=cfg.weight_decay, warmup_steps=round(cfg.warmup * steps),
                               schedule="cosine", desc=f"{LABELS[arm]} batch {b} seed {seed}")
        test_error[arm].append(fit.error)                                # BN: its running statistics
        train_loss[arm].append(evaluate(model, train_eval, device=ctx.device)["loss"])
        histories[arm].append(fit.history)

    error, loss = mean_over_seeds(test_error), mean_over_seeds(train_loss)
    passed = error["gn_ws"] <= error["bn"] + 1.5 and loss["gn_ws"] < loss["gn"]
    curves = {}
    for arm, hs in histories.items():                                    # mean over seeds of the running mean
        b = batch[ARMS[arm]]
        per_seed = [loss_curve(h, b, window_samples=max(cfg.large_batch, cfg.samples // 20), points=60) for h in hs]
        curves[arm] = {"images": per_seed[0][0], "loss": np.mean([c[1] for c in per_seed], axis=0).tolist()}
    metrics = {
        "test_error": error, "train_loss": loss,
        "test_error_per_seed": test_error, "train_loss_per_seed": train_loss,
        "gn_ws_minus_bn_error": error["gn_ws"] - error["bn"], "gn_minus_gn_ws_train_loss": loss["gn"] - loss["gn_ws"],
        "batch_size": {arm: batch[ARMS[arm]] for arm in ARMS},
        "steps": {arm: max(1, cfg.samples // batch[ARMS[arm]]) for arm in ARMS},
        "lr": {arm: cfg.base_lr * batch[ARMS[arm]] / 32 for arm in ARMS},
        "train_loss_curves": curves,
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_micro_batch(curves, test_error, train_loss, cfg),
                       notes=f"{cfg.samples} images seen per run from a {len(data.train)}-image training subset; "
                             f"test error on {len(data.test)} test images, training loss on {len(train_eval)} training "
                             f"images; CifarResNet-{cfg.depth} width {cfg.width}, GN with G = {cfg.groups}")


def plot_micro_batch(curves: dict, test_error: dict, train_loss: dict, cfg):
    """The paper's comparison redrawn: training loss against images seen, and final test error / training loss."""
    import matplotlib.pyplot as plt

    colors = {"bn": "tab:blue", "gn": "tab:orange", "gn_ws": "tab:green"}
    batch = {"bn": cfg.large_batch, "gn": cfg.micro_batch, "gn_ws": cfg.micro_batch}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), gridspec_kw=dict(width_ratios=(2, 1, 1)))
    for arm, c in curves.items():
        axes[0].plot(c["images"], c["loss"], color=colors[arm], label=f"{LABELS[arm]}, batch {batch[arm]}")
    axes[0].set(xlabel="training images seen", ylabel="training loss (running mean)", title="training loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    for ax, values, title in ((axes[1], test_error, "test error (%)"), (axes[2], train_loss, "final training loss")):
        for i, arm in enumerate(values):
            ax.bar(i, np.mean(values[arm]), color=colors[arm], alpha=0.7)
            ax.plot([i] * len(values[arm]), values[arm], "k.", ms=6)      # one dot per seed
            ax.text(i, np.mean(values[arm]), f"{np.mean(values[arm]):.2f}", ha="center", va="bottom")
        ax.set_xticks(range(len(values)), [f"{LABELS[a]}\nbatch {batch[a]}" for a in values])
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Micro-batch training: GN+WS at 2 images per batch vs BN at 32 and GN at 2 (cf. Sec. 5)")
    fig.tight_layout()
    return fig
