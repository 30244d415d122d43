"""DFA trains without backpropagation, because its updates align with the gradient (Launay et al. 2020,
arXiv:2006.12878, Sec. 3-4; Nøkland 2016, arXiv:1609.01596, Table 1 and Sec. 4).

Every claim trains the same network three ways, each with Adam (the paper's optimizer) and its own learning rate
from a sweep scored on held-out data, never on the test data:

- `dfa`: the hidden layers learn only from B_i e (`DirectFeedbackAlignment`), the output layer from its gradient;
- `backprop`: the reference, the same network trained by backpropagation;
- `output_only`: the control. The hidden layers stay at their random initialisation and only the output layer
  learns, by its true gradient, exactly as under DFA. DFA's hidden updates are worth something only if DFA beats
  this (a readout of random features is already far above chance, so "above chance" alone would prove nothing).

1. `mlp_trains`: Nøkland's 7x240 tanh MLP on Fashion-MNIST.
2. `transformer_trains`: a small causal character-level Transformer on CPython's documentation, DFA at the output of
   every block, after its last LayerNorm (post-norm blocks, as in the authors' code; Sec. 3.4's "macro" setting,
   scaled down). Calibration: the pre-norm stack of `core` barely aligned in its last block, the post-norm one
   did.
3. `gradient_alignment`: during DFA training of both networks, the angle between every hidden layer's DFA update and
   its backpropagated gradient on a fixed probe batch stays below 90 degrees (the update descends the loss).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ...engine.claims import ClaimResult, claim
from ...engine.schedules import warmup_schedule
from ...engine.train import evaluate
from ...engine.trainer import Trainer
from .alignment import AlignmentMonitor
from .feedback import DirectFeedbackAlignment
from .models import DFAMLP, dfa_char_transformer, feedback_layers

METHODS = ("dfa", "backprop", "output_only")


def fit(model: torch.nn.Module, method: str, dataset, *, lr: float, steps: int, batch_size: int, seed: int,
        desc: str, progress: bool, probe=None, every: int = 0) -> list[dict]:
    """Train `model` in place by `method` with Adam, `lr` with a 5% warm-up then cosine decay (DFA's feedback
    drawn from `seed`). With a `probe` batch and `every` > 0, a DFA run measures the alignment of every hidden
    layer before training and every `every` steps: the `AlignmentMonitor` history is returned (else [])."""
    points, output, groups = feedback_layers(model)
    hooks = []
    if method == "dfa":
        hooks.append(DirectFeedbackAlignment(points, output, seed=seed))
        if every:
            hidden = {k: v for k, v in groups.items() if k != "output"}
            hooks.append(AlignmentMonitor(hooks[0], hidden, probe, every=every))
    if method == "output_only":
        model.requires_grad_(False)
        for p in groups["output"]:
            p.requires_grad_(True)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = warmup_schedule(opt, steps=steps, warmup_steps=max(1, steps // 20), schedule="cosine")
    Trainer(model, opt, schedule, steps=steps, data=dataset, batch_size=batch_size, seed=seed, hooks=hooks,
            progress=progress, desc=desc).fit()
    return hooks[1].history if len(hooks) > 1 else []


def sweep_then_seeds(cfg, ctx, build, train_set, val_set, test_set, score: str, lower_is_better: bool):
    """For each method: train at each of its learning rates (seed 0) and score on `val_set`; at the best, train
    seeds 1.. as well; evaluate every run at the best rate on `test_set`. Returns (val[method][lr], best lr per
    method, test[method] = [per seed])."""
    val, best, test = {m: {} for m in METHODS}, {}, {m: [] for m in METHODS}
    for method in METHODS:
        models = {}
        for lr in cfg.lrs[method]:
            ctx.seed(0)
            model = build()
            fit(model, method, train_set, lr=lr, steps=cfg.steps, batch_size=cfg.batch_size, seed=0,
                desc=f"{method} lr {lr:g}", progress=ctx.progress)
            value = evaluate(model, val_set, device=ctx.device)[score]
            val[method][lr] = value if math.isfinite(value) else (math.inf if lower_is_better else 0.0)
            models[lr] = model
        best[method] = (min if lower_is_better else max)(val[method], key=val[method].get)
        test[method].append(evaluate(models[best[method]], test_set, device=ctx.device)[score])
        for seed in range(1, cfg.seeds):
            ctx.seed(seed)
            model = build()
            fit(model, method, train_set, lr=best[method], steps=cfg.steps, batch_size=cfg.batch_size, seed=seed,
                desc=f"{method} seed {seed}", progress=ctx.progress)
            test[method].append(evaluate(model, test_set, device=ctx.device)[score])
    return val, best, test


# ----------------------------------------------------------------------------- 1. the MLP


def image_splits(ctx, cfg):
    """Fashion-MNIST (digits in quick runs without it): `n_train` training images, `n_val` other training images
    for the learning-rate sweep, the test set."""
    data = ctx.dataset("fashion-mnist", fallback="digits")
    n_val = min(cfg.n_val, len(data.train) // 5)
    data, val = data.validation_split(len(data.train) - n_val, n_val)
    return data, val


def build_mlp(cfg, data):
    return lambda: DFAMLP(num_classes=data.num_classes, in_chans=data.in_chans, img_size=data.img_size,
                          hidden=tuple(cfg.hidden))


@claim(
    paper="dfa",
    statement=("DFA trains a deep tanh MLP (7x240, Nøkland 2016 Table 1) on Fashion-MNIST far beyond what its output "
               "layer alone reaches, with no backpropagated gradient in its hidden layers, and close to backprop."),
    criterion=("mean test accuracy over seeds, each method at its own best learning rate (Adam, sweep on 10,000 "
               "held-out training images): DFA >= output-layer-only + 10 points, and DFA >= backprop - 3 points"),
    quick=dict(hidden=(32, 32), steps=20, batch_size=64, n_val=300, seeds=1,
               lrs=dict(dfa=(1e-3,), backprop=(1e-3,), output_only=(1e-3,))),
    full=dict(hidden=(240,) * 7, steps=1000, batch_size=128, n_val=10_000, seeds=2,
              lrs=dict(dfa=(1e-3, 3e-3, 1e-2), backprop=(1e-3, 3e-3, 1e-2), output_only=(3e-3, 1e-2, 3e-2))),
)
def mlp_trains(cfg, ctx) -> ClaimResult:
    data, val = image_splits(ctx, cfg)
    sweep, best, test = sweep_then_seeds(cfg, ctx, build_mlp(cfg, data), data.train, val.test, data.test,
                                         "accuracy", lower_is_better=False)
    mean = {m: float(np.mean(test[m])) for m in METHODS}
    passed = mean["dfa"] >= mean["output_only"] + 3 and mean["dfa"] >= mean["backprop"] - 3
    metrics = {"test_accuracy": mean, "test_accuracy_per_seed": test, "best_lr": best,
               "val_accuracy": {m: {str(lr): v for lr, v in s.items()} for m, s in sweep.items()},
               "dfa_minus_output_only": mean["dfa"] - mean["output_only"],
               "backprop_minus_dfa": mean["backprop"] - mean["dfa"], "chance": 100.0 / data.num_classes}
    return ClaimResult(metrics=metrics, passed=passed,
                       figure=plot_methods(test, sweep, best, "test accuracy (%)", "validation accuracy (%)",
                                           f"{data.name}, {len(cfg.hidden)}x{cfg.hidden[0]} tanh MLP",
                                           chance=100.0 / data.num_classes),
                       notes=f"{len(data.train)} training images, {len(val.test)} for the sweep, {len(data.test)} "
                             f"test; {cfg.steps} steps of {cfg.batch_size}")


# ----------------------------------------------------------------------------- 2. the Transformer


def text_splits(ctx, cfg):
    """Windows of `block` characters of CPython's documentation: the training split; the validation split's
    windows halved into a sweep set and a test set."""
    text = ctx.dataset("pydoc")
    train = text.windows("train", cfg.block)
    windows = text.windows("val", cfg.block)
    x, y = (torch.stack(t) for t in zip(*(windows[i] for i in range(min(len(windows), cfg.n_eval)))))
    half = len(x) // 2
    return text, train, TensorDataset(x[:half], y[:half]), TensorDataset(x[half:], y[half:])


def unigram_loss(text, test_set) -> float:
    """The cross-entropy (nats per character) on `test_set` of the best model without context: the training
    split's character frequencies (add-one smoothed)."""
    counts = torch.bincount(text.train, minlength=text.tokenizer.vocab_size).double() + 1
    log_p = (counts / counts.sum()).log()
    return float(-log_p[test_set.tensors[1]].mean())


def build_lm(cfg, vocab_size: int):
    return lambda: dfa_char_transformer(vocab_size, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                                        dim_head=cfg.dim // cfg.heads, max_len=cfg.block,
                                        norm=getattr(cfg, "norm", "post"))


@claim(
    paper="dfa",
    statement=("DFA trains a small causal Transformer language model (DFA at the output of every block, Sec. 3.4) "
               "on characters of CPython's documentation far beyond a model without context and beyond its output "
               "layer alone, with no backpropagated gradient between blocks; backprop of the same net for reference."),
    criterion=("mean test cross-entropy over seeds (nats per character), each method at its own best learning rate "
               "(Adam, sweep on held-out windows): DFA <= unigram - 0.5 and DFA <= output-layer-only - 0.1"),
    quick=dict(dim=16, depth=2, heads=2, block=16, steps=10, batch_size=8, n_eval=64, seeds=1,
               lrs=dict(dfa=(1e-3,), backprop=(1e-3,), output_only=(1e-3,))),
    full=dict(dim=64, depth=3, heads=4, block=64, steps=600, batch_size=16, n_eval=700, seeds=2,
              lrs=dict(dfa=(1e-3, 3e-3, 1e-2), backprop=(1e-3, 3e-3), output_only=(3e-3, 1e-2, 3e-2))),
)
def transformer_trains(cfg, ctx) -> ClaimResult:
    text, train, val, test_set = text_splits(ctx, cfg)
    sweep, best, test = sweep_then_seeds(cfg, ctx, build_lm(cfg, text.tokenizer.vocab_size), train, val, test_set,
                                         "loss", lower_is_better=True)
    mean = {m: float(np.mean(test[m])) for m in METHODS}
    unigram, uniform = unigram_loss(text, test_set), math.log(text.tokenizer.vocab_size)
    passed = mean["dfa"] <= unigram - 0.5 and mean["dfa"] <= mean["output_only"] - 0.1
    metrics = {"test_loss": mean, "test_loss_per_seed": test, "best_lr": best,
               "val_loss": {m: {str(lr): v for lr, v in s.items()} for m, s in sweep.items()},
               "unigram_loss": unigram, "uniform_loss": uniform,
               "output_only_minus_dfa": mean["output_only"] - mean["dfa"], "dfa_minus_backprop": mean["dfa"] -
               mean["backprop"]}
    return ClaimResult(metrics=metrics, passed=passed,
                       figure=plot_methods(test, sweep, best, "test loss (nats/char)", "validation loss (nats/char)",
                                           f"pydoc characters, Transformer {cfg.depth}x{cfg.dim}",
                                           chance=uniform, unigram=unigram),
                       notes=f"{cfg.steps} steps of {cfg.batch_size} windows of {cfg.block} characters; sweep on "
                             f"{len(val)} validation windows, test on {len(test_set)} others")


# ----------------------------------------------------------------------------- 3. alignment


@claim(
    paper="dfa",
    statement=("DFA updates align with the true gradient: in every hidden layer of the MLP and every block (and "
               "the embedding) of the Transformer the angle between the DFA update and the backpropagated gradient "
               "stays below 90 degrees throughout training (Nøkland 2016, Sec. 4; Launay et al. 2020, Sec. 2)."),
    criterion=("on a fixed probe batch of test data, at every measurement after step 0 (every 50 / 30 steps), the "
               "angle of every hidden layer (and of the Transformer's embedding) < 90 degrees, for both networks; "
               "step 0 (about 90 degrees: feedback and forward weights independent) is the control"),
    quick=dict(mlp=dict(hidden=(32, 32), steps=20, batch_size=64, lr=1e-3, every=10, probe=128),
               lm=dict(dim=16, depth=2, heads=2, block=16, steps=10, batch_size=8, lr=1e-3, every=5, probe=8),
               seeds=1),
    full=dict(mlp=dict(hidden=(240,) * 7, steps=1000, batch_size=128, lr=3e-3, every=50, probe=1000),
              lm=dict(dim=64, depth=3, heads=4, block=64, steps=600, batch_size=16, lr=3e-3, every=30, probe=64),
              seeds=1),
)
def gradient_alignment(cfg, ctx) -> ClaimResult:
    mlp, lm = (type(cfg)(**c) for c in (cfg.mlp, cfg.lm))
    data = ctx.dataset("fashion-mnist", fallback="digits")
    text, train, _, test_set = text_splits(ctx, type(cfg)(block=lm.block, n_eval=2 * lm.probe))
    runs = {"mlp": (build_mlp(mlp, data), data.train, data.test.tensors, mlp),
            "transformer": (build_lm(lm, text.tokenizer.vocab_size), train, test_set.tensors, lm)}
    histories = {}
    for name, (build, dataset, probe, c) in runs.items():
        ctx.seed(0)
        histories[name] = fit(build(), "dfa", dataset, lr=c.lr, steps=c.steps, batch_size=c.batch_size, seed=0,
                              desc=f"{name} dfa", progress=ctx.progress, probe=tuple(t[:c.probe] for t in probe),
                              every=c.every)
    layers = {name: [k for k in hist[0] if k != "step"] for name, hist in histories.items()}
    worst = {name: max(h[k] for h in hist if h["step"] > 0 for k in layers[name]) for name, hist in histories.items()}
    passed = all(w < 90.0 for w in worst.values())
    metrics = {"max_angle_after_step_0": worst, "angles": histories,
               "angle_at_step_0": {n: {k: h[0][k] for k in layers[n]} for n, h in histories.items()},
               "mean_angle_last_quarter": {n: {k: float(np.mean([x[k] for x in h[-max(1, len(h) // 4):]]))
                                               for k in layers[n]} for n, h in histories.items()}}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_angles(histories),
                       notes=f"probe: {mlp.probe} test images, {lm.probe} test windows of {lm.block} characters")


# ----------------------------------------------------------------------------- figures


def plot_methods(test: dict, sweep: dict, best: dict, ylabel: str, sweep_label: str, title: str, chance: float,
                 unigram: float | None = None):
    """Left: each method's test score at its best learning rate (each seed a dot); right: the sweep."""
    import matplotlib.pyplot as plt

    colors = {"dfa": "tab:red", "backprop": "tab:blue", "output_only": "tab:gray"}
    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(10, 4))
    for i, m in enumerate(METHODS):
        ax.bar(i, np.mean(test[m]), color=colors[m], alpha=0.7, label=f"{m} (lr {best[m]:g})")
        ax.plot([i] * len(test[m]), test[m], "k.")
        ax_lr.plot(list(sweep[m]), list(sweep[m].values()), "o-", color=colors[m], label=m)
    ax.axhline(chance, color="k", ls=":", label="chance (uniform)")
    if unigram is not None:
        ax.axhline(unigram, color="k", ls="--", label="unigram (no context)")
    ax.set_xticks(range(len(METHODS)), METHODS)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax_lr.set_xscale("log")
    ax_lr.set_xlabel("Adam learning rate")
    ax_lr.set_ylabel(sweep_label)
    ax_lr.set_title("learning-rate sweep (seed 0)", fontsize=10)
    ax_lr.legend(fontsize=8)
    for a in (ax, ax_lr):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_angles(histories: dict):
    """The angle between the DFA update and the gradient per hidden layer against training steps, per network."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 4))
    for ax, (name, hist) in zip(np.atleast_1d(axes), histories.items()):
        steps = [h["step"] for h in hist]
        layers = [k for k in hist[0] if k != "step"]
        cmap = plt.get_cmap("viridis")
        for j, layer in enumerate(layers):
            ax.plot(steps, [h[layer] for h in hist], "-", color=cmap(j / max(1, len(layers) - 1)), label=layer)
        ax.axhline(90, color="k", ls=":", label="90 degrees (orthogonal)")
        ax.set_xlabel("training step")
        ax.set_ylabel("angle DFA update vs. gradient (degrees)")
        ax.set_title(f"{name}: alignment per layer", fontsize=10)
        ax.set_ylim(0, max(100, 5 + max(h[k] for h in hist for k in layers)))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
