"""The Synthesizer's claims (Tay et al. 2020, arXiv:2005.00743, Sec. 4) on generated sequence tasks.

Every model is the same small `SequenceTransformer` (sinusoidal positions as in the paper's Transformer, pre-norm,
`dim` 64, 2 layers, 4 heads of 16) and only its attention changes: a synthesizer (`SynthesizerAttention`) or
dot-product attention (`core.FullAttention`, the paper's "Vanilla"). For a given seed every model sees the same data
and batches.

- `random_alignment_learns`: the Random Synthesizer's weights are parameters that never look at the tokens; is
  it competitive with dot-product attention where the alignment depends on the content? Associative recall
  (the query key must find its pair), each model at its own learning rate (`sweep_lr`), Fixed Random as the
  control, and only once dot-product attention has learned the task.
- `mixture_matches_vanilla`: the mixture Random + Vanilla (Sec. 3.1, Mixture of Synthesizers) matches or beats
  dot-product attention on copy (an input-independent alignment) and on ListOps (nested operators, the Long
  Range Arena task where Tay et al. 2021 found synthesizers on a par with the Transformer), each model at its
  own learning rate (`sweep_lr`), and only once dot-product attention has learned copy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ...core.sequence import SequenceTransformer
from ...engine.claims import ClaimResult, claim, mean_over_seeds

METHODS = {                                                     # name -> (attention, attention kwargs besides l)
    "random": ("synthesizer", dict(synthesizer="random")),
    "fixed_random": ("synthesizer", dict(synthesizer="random", fixed_random=True)),
    "vanilla": ("full", {}),
    "random+vanilla": ("synthesizer", dict(synthesizer="random+vanilla")),
}
LABELS = {"random": "Random", "fixed_random": "Fixed Random", "vanilla": "Vanilla (dot product)",
          "random+vanilla": "Random + Vanilla"}


def sequence_model(task, method: str, length: int, cfg) -> SequenceTransformer:
    """The claims' model on `task` with attention `method` (METHODS); causal for duplication (language modelling)."""
    attention, kwargs = METHODS[method]
    return SequenceTransformer(task.vocab_size, task.num_classes, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                               dim_head=cfg.dim // cfg.heads, max_len=length, attention=attention,
                               attention_kwargs=dict(seq_len=length, **kwargs) if attention == "synthesizer" else None,
                               causal=task.name == "duplication", per_token=task.per_token,
                               positional=cfg.positional)


def task_data(name: str, length: int, n_train: int, n_test: int, seed: int = 0):
    """Generated task `name` (`data.load_dataset`); associative recall is scored at its last position, the query,
    as a per-token task (as H3 and Zoology score it; mean-pooling would blur the one answer over every state)."""
    from ...data import IGNORE_INDEX, load_dataset

    data = load_dataset(name, length=length, n_train=n_train, n_test=n_test, seed=seed)
    if name != "associative_recall":
        return data

    def at_query(split: TensorDataset) -> TensorDataset:
        x, y = split.tensors                                    # (n, N), (n,)
        target = torch.full_like(x, IGNORE_INDEX)
        target[:, -1] = y
        return TensorDataset(x, target)

    return dataclasses.replace(data, train=at_query(data.train), test=at_query(data.test), per_token=True)


def chance(task) -> float:
    """The accuracy of always answering the most frequent test target (percent; scored tokens only)."""
    y = task.test.tensors[1]
    y = y[y != task.ignore_index]
    return 100.0 * float(y.bincount().max()) / y.numel()


def train_grid(cfg, ctx, tasks, methods, context=(), lr=None) -> tuple[dict, dict, dict]:
    """Test accuracy (percent; per token for copy and duplication) of every (task, method) for every seed (the
    `context` methods for seed 0 only), the trained models of seed 0, and each task's chance level.

    `lr`: {task: {method: learning rate}} (e.g. from `sweep_lr`), else `cfg.lr` for all.
    """
    accuracy = {t: {m: [] for m in (*methods, *context)} for t in tasks}
    models = {}
    data = {t: task_data(t, cfg.length, cfg.n_train, cfg.n_test) for t in tasks}
    for seed, t, m in ctx.grid(cfg.seeds, tasks, (*methods, *context)):
        if seed > 0 and m in context:
            continue
        ctx.seed(seed)
        model = sequence_model(data[t], m, cfg.length, cfg)
        fit = ctx.fit_and_eval(model, data[t], steps=cfg.steps, batch_size=cfg.batch_size, seed=seed,
                               lr=cfg.lr if lr is None else lr[t][m], warmup_steps=cfg.steps // 10, eval_train=False,
                               desc=f"{m} on {t}, seed {seed}")
        accuracy[t][m].append(fit.accuracy)
        if seed == 0:
            models[t, m] = model
    return accuracy, models, {t: chance(data[t]) for t in tasks}


def sweep_lr(cfg, ctx, tasks, methods) -> tuple[dict, dict]:
    """Each (task, method)'s learning rate: the one of `cfg.lrs` with the best validation accuracy, seed 0.

    The validation set is drawn apart from the training and test sets (generator seed 1, `cfg.n_val`
    sequences). Returns ({task: {method: lr}}, {task: {method: {lr: validation accuracy}}}).
    """
    val_accuracy = {t: {m: {} for m in methods} for t in tasks}
    for t in tasks:
        data = task_data(t, cfg.length, cfg.n_train, cfg.n_test)
        val = dataclasses.replace(data, test=task_data(t, cfg.length, 1, cfg.n_val, seed=1).test)
        for m, lr in ctx.grid(methods, cfg.lrs):
            ctx.seed(0)
            model = sequence_model(data, m, cfg.length, cfg)
            fit = ctx.fit_and_eval(model, val, steps=cfg.steps, batch_size=cfg.batch_size, seed=0, lr=lr,
                                   warmup_steps=cfg.steps // 10, eval_train=False, desc=f"{m} on {t}, lr {lr:g}")
            val_accuracy[t][m][lr] = fit.accuracy
    best = {t: {m: max(cfg.lrs, key=lambda lr: val_accuracy[t][m][lr]) for m in methods} for t in tasks}
    return best, val_accuracy


def plot_accuracy(ax, accuracy: dict, chance_level: dict, title: str) -> None:
    """Bars: mean test accuracy per task and method, dots: the seeds, dashes: chance (the most frequent target)."""
    tasks = list(accuracy)
    methods = list(accuracy[tasks[0]])
    width = 0.8 / len(methods)
    colors = {"random": "tab:orange", "fixed_random": "tab:gray", "vanilla": "tab:blue", "random+vanilla": "tab:green"}
    for j, m in enumerate(methods):
        xs = np.arange(len(tasks)) + (j - (len(methods) - 1) / 2) * width
        means = [np.mean(accuracy[t][m]) for t in tasks]
        seeds = len(accuracy[tasks[0]][m])
        ax.bar(xs, means, width, color=colors[m], alpha=0.85,
               label=f"{LABELS[m]} ({seeds} seed{'s' if seeds > 1 else ''})")
        for x, t in zip(xs, tasks):
            ax.plot([x] * len(accuracy[t][m]), accuracy[t][m], "k.", ms=4)
    for i, t in enumerate(tasks):
        ax.hlines(chance_level[t], i - 0.45, i + 0.45, colors="k", linestyles="--", lw=1,
                  label="chance" if i == 0 else None)
    ax.set_xticks(range(len(tasks)), [t.replace("_", " ") for t in tasks])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)


@claim(
    paper="synthesizer",
    statement=("Random alignments are competitive with dot-product attention (Sec. 4): a Random Synthesizer, whose "
               "attention weights are trained parameters that never look at the tokens, learns a task whose "
               "alignment depends on the content (associative recall) nearly as well as dot-product attention "
               "that has learned it, and it does so by training R (Fixed Random falls short)."),
    criterion=("each of Vanilla, Random and Fixed Random takes the learning rate of {1e-3, 3e-3, 1e-2} with the best "
               "validation accuracy (seed 0, a validation set drawn apart from train and test); then over 3 seeds, "
               "mean test accuracy at the query of associative recall (16 keys, 16 values, chance ~6%): Vanilla >= 90% "
               "(it has learned the task, else the comparison is void and the claim fails), Random's gain over "
               "chance >= 80% of Vanilla's, and Fixed Random's gain < Random's (the control)"),
    quick=dict(length=16, n_train=64, n_val=16, n_test=16, steps=3, batch_size=8, lrs=(3e-3, 1e-2), dim=16, depth=1,
               heads=2, positional="sinusoidal", seeds=1),
    full=dict(length=64, n_train=8000, n_val=500, n_test=1000, steps=400, batch_size=32, lrs=(1e-3, 3e-3, 1e-2),
              dim=64, depth=2, heads=4, positional="sinusoidal", seeds=3),
)
def random_alignment_learns(cfg, ctx) -> ClaimResult:
    tasks, methods = ("associative_recall",), ("vanilla", "random", "fixed_random")
    lr, val_accuracy = sweep_lr(cfg, ctx, tasks, methods)
    accuracy, models, chance_level = train_grid(cfg, ctx, tasks, methods, lr=lr)
    mean = mean_over_seeds(accuracy["associative_recall"])
    gain = {m: mean[m] - chance_level["associative_recall"] for m in methods}       # points over chance
    vanilla_learned = mean["vanilla"] >= 90.0
    random_competitive = gain["random"] >= 0.8 * gain["vanilla"]
    control_falls_short = gain["fixed_random"] < gain["random"]
    passed = vanilla_learned and random_competitive and control_falls_short
    alignment = (models["associative_recall", "random"].transformer.blocks[0].attn.synthesizers["random"].R[0]
                 .detach().softmax(-1))
    return ClaimResult(metrics={"accuracy": mean, "accuracy_per_seed": accuracy, "gain_over_chance": gain,
                                "vanilla_learned": vanilla_learned, "random_competitive": random_competitive,
                                "control_falls_short": control_falls_short, "lr": lr,
                                "lr_sweep_val_accuracy": val_accuracy, "chance": chance_level},
                       passed=passed,
                       figure=plot_random_alignment(accuracy, chance_level, alignment.numpy()),
                       notes="test accuracy at the query position (percent); gain = mean accuracy minus chance (the "
                             "most frequent test answer); lr = each model's learning rate, picked on validation "
                             "accuracy (lr_sweep_val_accuracy, seed 0); alignment: softmax(R) of layer 1, head 1, "
                             "seed 0")


def plot_random_alignment(accuracy: dict, chance_level: dict, alignment: np.ndarray):
    """Test accuracy per method (left) and the alignment softmax(R) a Random Synthesizer learned (right)."""
    import matplotlib.pyplot as plt

    fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    plot_accuracy(ax, accuracy, chance_level, "Random Synthesizer vs dot-product attention")
    im = ax_r.imshow(alignment, cmap="viridis", vmin=0, vmax=1)
    ax_r.set_xlabel("key position j")
    ax_r.set_ylabel("query position i")
    ax_r.set_title("softmax(R), layer 1 head 1, learned on associative recall")
    fig.colorbar(im, ax=ax_r, fraction=0.046)
    fig.tight_layout()
    return fig


@claim(
    paper="synthesizer",
    statement=("A mixture of synthesizers with dot-product attention, Random + Vanilla (Sec. 3.1, Mixture of "
               "Synthesizers), matches or beats dot-product attention alone (Sec. 4: mixtures outperform the "
               "Transformer), when each is trained at its own tuned learning rate to where dot-product attention "
               "has learned the task."),
    criterion=("each of Vanilla and Random + Vanilla takes, per task, the learning rate of {3e-3, 1e-2, 3e-2} with the "
               "best validation accuracy (seed 0, a validation set drawn apart from train and test); then over 5 "
               "seeds: Vanilla's mean test accuracy on copy >= 90% (it has learned the task, else the comparison is "
               "void and the claim fails) and, on each of copy and ListOps, the mean test accuracy of "
               "Random + Vanilla >= that of Vanilla - 3 points"),
    quick=dict(length=16, n_train=64, n_val=16, n_test=16, steps=3, batch_size=8, lrs=(1e-2, 3e-2), dim=16, depth=1,
               heads=2, positional="sinusoidal", seeds=1),
    demo=dict(length=64, n_train=4000, n_val=500, n_test=1000, steps=300, batch_size=32, lrs=(1e-2,), dim=64,
              depth=2, heads=4, positional="sinusoidal", seeds=1),
    full=dict(length=64, n_train=4000, n_val=500, n_test=1000, steps=300, batch_size=32, lrs=(3e-3, 1e-2, 3e-2),
              dim=64, depth=2, heads=4, positional="sinusoidal", seeds=5),
)
def mixture_matches_vanilla(cfg, ctx) -> ClaimResult:
    tasks, methods = ("copy", "listops"), ("vanilla", "random+vanilla")
    lr, val_accuracy = sweep_lr(cfg, ctx, tasks, methods)
    accuracy, models, chance_level = train_grid(cfg, ctx, tasks, methods, lr=lr)
    mean = {t: mean_over_seeds(accuracy[t]) for t in tasks}
    margin = {t: mean[t]["random+vanilla"] - mean[t]["vanilla"] for t in tasks}
    vanilla_learned = mean["copy"]["vanilla"] >= 90.0
    passed = vanilla_learned and all(m >= -3.0 for m in margin.values())
    alpha = {t: [float(b.attn.alpha()[0].detach()) for b in models[t, "random+vanilla"].transformer.blocks]
             for t in tasks}                                    # the weight on R in each layer (seed 0)
    return ClaimResult(metrics={"accuracy": mean, "accuracy_per_seed": accuracy, "margin": margin,
                                "vanilla_learned_copy": vanilla_learned, "lr": lr,
                                "lr_sweep_val_accuracy": val_accuracy, "alpha_random_seed0": alpha,
                                "chance": chance_level},
                       passed=passed, figure=plot_mixture(accuracy, chance_level, alpha),
                       notes="margin = Random + Vanilla minus Vanilla, mean test accuracy in points; lr = each "
                             "model's learning rate per task, picked on validation accuracy (lr_sweep_val_accuracy, "
                             "seed 0); alpha = the learned weight on R per layer (1 - alpha on Q K^T), seed 0")


def plot_mixture(accuracy: dict, chance_level: dict, alpha: dict):
    """Test accuracy of Vanilla and Random + Vanilla (left) and the learned mixture weight on R per layer (right)."""
    import matplotlib.pyplot as plt

    fig, (ax, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    plot_accuracy(ax, accuracy, chance_level, "Mixture of synthesizers vs dot-product attention")
    for t, a in alpha.items():
        ax_a.plot(range(1, len(a) + 1), a, "o-", label=t.replace("_", " "))
    ax_a.axhline(0.5, color="k", ls=":", lw=1)
    ax_a.set_xlabel("layer")
    ax_a.set_ylabel(r"$\alpha_R$ (weight on R; $1-\alpha_R$ on $QK^T$)")
    ax_a.set_ylim(0, 1)
    ax_a.set_xticks(range(1, max(len(a) for a in alpha.values()) + 1))
    ax_a.set_title("learned mixture weight (seed 0; starts at 0.5)")
    ax_a.legend()
    fig.tight_layout()
    return fig
