"""Attentions compared on a generated task, each at its own learning rate (the claims of Linformer and BigBird).

`compare_attentions` trains the same small `SequenceTransformer` (dim 64, 2 pre-norm layers, 4 heads of 16,
sinusoidal positions, as in `archzoo bench tasks`) with each attention: first a learning-rate sweep on seed 0,
scored on validation sequences drawn apart from the training and test sets, then every seed at the attention's
best rate, scored on the test sequences. The sweep is returned with the results, as evidence that no attention
lost for want of its own rate.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...core.sequence import SequenceTransformer
from ..claims import mean_over_seeds
from .attention import majority_accuracy


def compare_attentions(ctx, cfg, variants: dict) -> dict:
    """Each of `variants` {name: (attention, attention_kwargs)} on the task `cfg.task` of length `cfg.length`.

    `cfg` gives n_train, n_val, n_test, steps, batch_size, lrs (the sweep) and seeds. Returns the test accuracy
    (mean and per seed), each variant's chosen lr, the sweep's validation accuracies {name: {lr: acc}} and the
    training-loss curves (mean over seeds) and the majority-class accuracy (`bench tasks`' chance row).
    """
    task = ctx.dataset(cfg.task, length=cfg.length, n_train=cfg.n_train, n_test=cfg.n_test, seed=0)
    val = dataclasses.replace(task, test=ctx.dataset(cfg.task, length=cfg.length, n_train=1, n_test=cfg.n_val,
                                                     seed=1).test)

    def fit(name, data, lr, seed, desc):
        attention, kw = variants[name]
        ctx.seed(seed)                                      # every variant starts from the same embeddings
        model = SequenceTransformer(task.vocab_size, task.num_classes, max_len=cfg.length, attention=attention,
                                    attention_kwargs=kw, per_token=task.per_token, positional="sinusoidal")
        return ctx.fit_and_eval(model, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=lr, seed=seed,
                                warmup_steps=cfg.steps // 10, eval_train=False, desc=desc)

    sweep = {name: {} for name in variants}                 # seed 0, scored on the validation sequences
    for name, lr in ctx.grid(variants, cfg.lrs):
        sweep[name][lr] = fit(name, val, lr, 0, f"{name}, lr {lr:g} (validation)").accuracy
    lr = {name: max(cfg.lrs, key=lambda x: sweep[name][x]) for name in variants}
    accuracy = {name: [] for name in variants}
    losses = {name: [] for name in variants}
    for seed, name in ctx.grid(cfg.seeds, variants):
        run = fit(name, task, lr[name], seed, f"{name} seed {seed}")
        accuracy[name].append(run.accuracy)
        losses[name].append([h["loss"] for h in run.history])
    return {"accuracy": mean_over_seeds(accuracy), "accuracy_per_seed": accuracy, "lr": lr,
            "lr_sweep_val_accuracy": sweep, "majority_class": majority_accuracy(task),
            "train_loss_curves": {name: np.mean(c, axis=0).tolist() for name, c in losses.items()}}


def plot_comparison(result: dict, title: str):
    """Test accuracy of each attention (bars, seeds as dots) and its training loss (running mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    mean, per_seed = result["accuracy"], result["accuracy_per_seed"]
    for i, name in enumerate(mean):
        ax.bar(i, mean[name], alpha=0.8, color=f"C{i}")
        ax.plot([i] * len(per_seed[name]), per_seed[name], "k.", ms=8)
        ax.text(i, mean[name] + 1, f"{mean[name]:.1f}", ha="center")
    ax.axhline(result["majority_class"], color="k", ls="--", lw=1, label="majority class")
    ax.legend(loc="upper right")
    ax.set_xticks(range(len(mean)), [f"{n}\nlr {result['lr'][n]:g}" for n in mean])
    ax.set(ylim=(0, 105), ylabel="test accuracy (%)", title=title)
    for i, (name, curve) in enumerate(result["train_loss_curves"].items()):
        window = max(1, len(curve) // 20)
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        ax2.plot(np.arange(len(smooth)) + window, smooth, color=f"C{i}", label=name)
    ax2.set(xlabel="step", ylabel="training loss (running mean)", title="training (mean over seeds)")
    ax2.grid(alpha=0.3)
    ax2.legend()
    fig.tight_layout()
    return fig
