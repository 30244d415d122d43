"""Manifold Mixup's claims on Fashion-MNIST (Verma et al. 2018, arXiv:1806.05236, Sec. 3 and 5.1).

The paper trains PreAct ResNets on CIFAR for 1200-2000 epochs and picks alpha for each method from a small set;
we train the bottleneck MLP `mixup_mlp` on a subset of Fashion-MNIST long enough that ERM fits its training set
and overfits (test loss rising), so that a regulariser matters, with SGD + momentum, cosine decay and weight decay
as the paper's runs. Three methods share everything but the training step: ERM (the engine's default step),
input mixup (`input_mixup`, k = 0) and Manifold Mixup (`ManifoldMixup`, k drawn from the input and every hidden
layer). Each method's alpha and learning rate are chosen on a validation split held out of the training set, then
each chosen configuration is trained with several seeds and measured on the test set.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ...engine.claims import ClaimResult, claim
from ...engine.metrics import expected_calibration_error
from ...engine.schedules import warmup_schedule
from ...engine.streams import gather
from ...engine.trainer import Trainer
from ...registry import create_model
from .mixup import ManifoldMixup, input_mixup

METHODS = ("erm", "input", "manifold")
LABELS = {"erm": "ERM", "input": "Input Mixup", "manifold": "Manifold Mixup"}


def split(data, n_train: int, n_val: int, n_test: int | None = None):
    """(train, validation, test): disjoint `n_train` and `n_val` examples of the training set (a fixed seeded
    permutation) and the first `n_test` test examples (all by default)."""
    x, y = data.train.tensors
    if n_train + n_val > len(y):
        raise ValueError(f"n_train + n_val must be <= {len(y)} (the training set), got {n_train} + {n_val}")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, val = order[:n_train], order[n_train:n_train + n_val]
    test = data.test if n_test is None else TensorDataset(*(t[:n_test] for t in data.test.tensors))
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]), test


def make_step(method: str, alpha: float):
    """The training step of a method: None (the engine's cross-entropy step) for ERM, else mixup's."""
    if method == "erm":
        return None
    return input_mixup(alpha) if method == "input" else ManifoldMixup(["input", "blocks.0", "blocks.1", "blocks.2"],
                                                                      alpha)


def train_method(method: str, alpha: float, lr: float, seed: int, train, cfg, num_classes: int, in_chans: int,
                 progress: bool = False):
    """A fresh `mixup_mlp` (seeded by `seed`) trained by `method` with SGD + momentum, cosine decay after a
    linear warm-up, weight decay; the batches and the mixup draws are seeded by `seed` too."""
    torch.manual_seed(seed)
    model = create_model("mixup_mlp", num_classes=num_classes, in_chans=in_chans, img_size=train[0][0].shape[-1],
                         hidden=tuple(cfg.hidden))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=cfg.weight_decay)
    sched = warmup_schedule(opt, steps=cfg.steps, warmup_steps=round(0.02 * cfg.steps), schedule="cosine")
    Trainer(model, opt, sched, steps=cfg.steps, data=train, batch_size=cfg.batch_size, step=make_step(method, alpha),
            seed=seed, progress=progress, desc=f"{method} alpha={alpha} lr={lr} seed={seed}").fit()
    return model.eval()


@torch.no_grad()
def predict(model, dataset, batch_size: int = 2000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, bottleneck features, targets) over `dataset`, in eval mode."""
    logits, feats, ys = [], [], []
    for i in range(0, len(dataset), batch_size):
        x, y = gather(dataset, torch.arange(i, min(i + batch_size, len(dataset))))
        h = model.forward_features(x)                            # (B, bottleneck)
        logits.append(model.forward_head(h))
        feats.append(h)
        ys.append(y)
    return torch.cat(logits), torch.cat(feats), torch.cat(ys)


def scores(logits: torch.Tensor, y: torch.Tensor) -> dict:
    """Test error (%), expected calibration error (%, 15 bins) and negative log-likelihood."""
    probs = logits.double().softmax(-1)
    return {"error": 100.0 * float((logits.argmax(-1) != y).double().mean()),
            "ece": 100.0 * expected_calibration_error(probs, y),
            "nll": float(torch.nn.functional.cross_entropy(logits.double(), y))}


def effective_rank(s: torch.Tensor) -> float:
    r"""The number of directions a spectrum spreads over (Roy & Vetterli 2007): exp(H(p)), p_i = s_i / \sum_j s_j.
    k equal singular values and zeros give k; it does not change when the representation is rescaled."""
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def class_spectra(h: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, D): the singular values of each class's centred hidden representations h[y == c] (Sec. 3, Fig. 3),
    largest first. Few large values and the rest near zero: a flat class representation."""
    return torch.stack([torch.linalg.svdvals(h[y == c] - h[y == c].mean(0)) for c in range(num_classes)])


def flatness(model, dataset, num_classes: int) -> tuple[float, torch.Tensor]:
    """The mean effective rank over classes of the bottleneck's class-conditional representations on `dataset`,
    and the spectra normalised by each class's largest singular value (C, D)."""
    _, h, y = predict(model, dataset)
    spectra = class_spectra(h.double(), y, num_classes)
    ranks = [effective_rank(s) for s in spectra]
    return float(np.mean(ranks)), spectra / spectra[:, :1].clamp_min(1e-12)


def load(ctx, cfg):
    data = ctx.dataset("fashion-mnist", fallback="digits")
    return data, *split(data, cfg.n_train, cfg.n_val, cfg.n_test)


def grid(method: str, cfg) -> list[tuple[float, float]]:
    """The (alpha, lr) configurations a method is tuned over; ERM has no alpha."""
    return [(0.0, lr) for lr in cfg.lrs] if method == "erm" else [(a, lr) for a in cfg.alphas for lr in cfg.lrs]


@claim(
    paper="manifold_mixup",
    statement=("Manifold Mixup gives a lower test error and a better calibration than ERM and than input mixup, each "
               "method with its own alpha and learning rate (Sec. 5.1, Table 1; calibration: Sec. 5, Fig. 5)."),
    criterion=("over the seeds, with each method's (alpha, lr) chosen by validation error: mean test error of Manifold "
               "Mixup < that of ERM and < that of input mixup, and mean expected calibration error (15 bins) of "
               "Manifold Mixup < that of ERM and < that of input mixup"),
    quick=dict(n_train=300, n_val=200, n_test=300, hidden=(32, 32, 32), steps=20, batch_size=32, weight_decay=1e-4,
               lrs=(0.05,), alphas=(2.0,), tune_seed=100, seeds=1),
    full=dict(n_train=5000, n_val=5000, n_test=None, hidden=(256, 256, 256), steps=2000, batch_size=128,
              weight_decay=1e-4, lrs=(0.03, 0.1), alphas=(0.5, 2.0), tune_seed=100, seeds=3),
)
def error_and_calibration(cfg, ctx) -> ClaimResult:
    data, train, val, test = load(ctx, cfg)
    fit = dict(cfg=cfg, num_classes=data.num_classes, in_chans=data.in_chans, progress=ctx.progress)
    tuning, chosen = {}, {}
    for method in METHODS:                                      # the paper's protocol: pick alpha (and lr) per method
        tuning[method] = {}
        for alpha, lr in grid(method, cfg):
            model = train_method(method, alpha, lr, cfg.tune_seed, train, **fit)
            tuning[method][f"alpha={alpha} lr={lr}"] = scores(*predict(model, val)[::2])["error"]
        best = min(tuning[method], key=tuning[method].get)
        chosen[method] = grid(method, cfg)[list(tuning[method]).index(best)]
    per_seed = {m: {k: [] for k in ("error", "ece", "nll")} for m in METHODS}
    reliability = {}
    for method in METHODS:
        for seed in range(cfg.seeds):
            logits, _, y = predict(train_method(method, *chosen[method], seed, train, **fit), test)
            for k, v in scores(logits, y).items():
                per_seed[method][k].append(v)
            reliability.setdefault(method, (logits.double().softmax(-1), y))
    mean = {m: {k: float(np.mean(v)) for k, v in per_seed[m].items()} for m in METHODS}
    mm = mean["manifold"]
    passed = all(mm[k] < mean[other][k] for k in ("error", "ece") for other in ("erm", "input"))
    metrics = {"methods": list(METHODS), "chosen": {m: {"alpha": a, "lr": lr} for m, (a, lr) in chosen.items()},
               "validation_error": tuning, "mean": mean, "per_seed": per_seed,
               "margins": {f"{other}_minus_manifold_{k}": mean[other][k] - mm[k]
                           for other in ("erm", "input") for k in ("error", "ece")}}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_calibration(per_seed, reliability, data.name),
                       notes=f"mixup_mlp {tuple(cfg.hidden)} on {cfg.n_train} {data.name} training images, "
                             f"{cfg.steps} steps of batch {cfg.batch_size}; test error and ECE on {len(test)} images")


@claim(
    paper="manifold_mixup",
    statement=("Manifold Mixup flattens the class-conditional hidden representations: their singular values fall "
               "faster than under ERM, so each class varies along fewer directions (Sec. 3, Fig. 3)."),
    criterion=("mean over classes of the effective rank of the centred class-conditional bottleneck representations "
               "(test set): lower under Manifold Mixup than under ERM in every seed, and lower by >= 20% on the mean "
               "over seeds"),
    quick=dict(n_train=300, n_val=0, n_test=300, hidden=(32, 32, 32), steps=20, batch_size=32, weight_decay=1e-4,
               lr=0.05, alpha=2.0, seeds=1),
    full=dict(n_train=5000, n_val=0, n_test=None, hidden=(256, 256, 256), steps=2000, batch_size=128,
              weight_decay=1e-4, lr=0.05, alpha=2.0, seeds=3),
)
def flattening(cfg, ctx) -> ClaimResult:
    data, train, _, test = load(ctx, cfg)
    fit = dict(cfg=cfg, num_classes=data.num_classes, in_chans=data.in_chans, progress=ctx.progress)
    ranks, spectra, width = {m: [] for m in METHODS}, {}, 0
    for method, seed in ctx.grid(METHODS, cfg.seeds):
        model = train_method(method, 0.0 if method == "erm" else cfg.alpha, cfg.lr, seed, train, **fit)
        rank, normalised = flatness(model, test, data.num_classes)
        width = model.num_features
        ranks[method].append(rank)
        spectra.setdefault(method, []).append(normalised.mean(0))          # mean over classes, (D,)
    mean = {m: float(np.mean(v)) for m, v in ranks.items()}
    passed = all(m < e for m, e in zip(ranks["manifold"], ranks["erm"])) and mean["manifold"] <= 0.8 * mean["erm"]
    curves = {m: torch.stack(v).mean(0).tolist() for m, v in spectra.items()}
    metrics = {"methods": list(METHODS), "effective_rank": ranks, "mean_effective_rank": mean,
               "manifold_over_erm": mean["manifold"] / mean["erm"], "normalised_singular_values": curves}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_spectra(curves, mean, data.name),
                       notes=f"mixup_mlp {tuple(cfg.hidden)}, bottleneck of {width} units, on {cfg.n_train} "
                             f"{data.name} training images; alpha {cfg.alpha}, lr {cfg.lr}; input mixup is a control")


def plot_calibration(per_seed: dict, reliability: dict, dataset: str):
    """Test error and ECE per method (mean and seeds), and the reliability diagram of each method's first seed."""
    import matplotlib.pyplot as plt

    from ...engine.metrics import calibration_bins

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, label in ((axes[0], "error", "test error (%)"), (axes[1], "ece", "expected calibration error (%)")):
        for i, m in enumerate(METHODS):
            ax.bar(i, np.mean(per_seed[m][key]), color=f"C{i}", alpha=0.6)
            ax.plot([i] * len(per_seed[m][key]), per_seed[m][key], "k.")
        ax.set_xticks(range(len(METHODS)), [LABELS[m] for m in METHODS])
        ax.set_ylabel(label)
    for i, m in enumerate(METHODS):
        acc, conf, count = calibration_bins(*reliability[m])
        keep = count > 0
        axes[2].plot(conf[keep], acc[keep], "o-", color=f"C{i}", label=LABELS[m])
    axes[2].plot([0, 1], [0, 1], "k--", linewidth=1)
    axes[2].set_xlabel("confidence")
    axes[2].set_ylabel("accuracy")
    axes[2].legend()
    fig.suptitle(f"{dataset}: error and calibration (cf. Sec. 5.1)")
    fig.tight_layout()
    return fig


def plot_spectra(curves: dict, mean: dict, dataset: str):
    """Fig. 3 redrawn: singular values of the class-conditional bottleneck representations, normalised by the
    largest, mean over classes and seeds."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, m in enumerate(METHODS):
        ax.plot(range(1, len(curves[m]) + 1), curves[m], "o-", color=f"C{i}",
                label=f"{LABELS[m]} (effective rank {mean[m]:.2f})")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("singular value / largest")
    ax.set_title(f"{dataset}: class-conditional bottleneck spectra (cf. Fig. 3)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
