"""The claims of Supermasks in Superposition (Wortsman et al. 2020, arXiv:2006.14769), on permuted Fashion-MNIST.

The paper learns up to 2,500 PermutedMNIST tasks with one FC 1024-1024 network of fixed signed-constant weights,
one supermask per task (Sec. 4, Fig. 3), and infers the task of a batch from the gradient of the output entropy
(Sec. 3.3). We learn 10 tasks of permuted Fashion-MNIST (a harder base task than MNIST) with a network of the same
form at a quarter of the width (256-256) and 400 batches per task instead of 1,000, so that each claim runs in a
few minutes on 2 cores (see README.md).

1. `no_forgetting`: every task keeps its accuracy after all later tasks are learned, while the same network
   trained as usual, one task after another (fine-tuning), forgets the earlier tasks.
2. `task_inference`: one gradient of the entropy w.r.t. the mask coefficients (Eq. 5) names the task of a batch.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ...engine.claims import ClaimResult, claim
from ...engine.train import evaluate, train
from .inference import infer_task
from .models import SupSupMLP
from .permuted import PermutedTasks
from .supermask import set_task, task_scores


def permuted_tasks(ctx, cfg) -> PermutedTasks:
    """`cfg.tasks` permutations of Fashion-MNIST (digits in quick runs), test sets of `cfg.n_test` images."""
    data = ctx.dataset("fashion-mnist", fallback="digits")
    return PermutedTasks(data, cfg.tasks, seed=cfg.permutation_seed, n_test=cfg.n_test)


def supsup_net(tasks: PermutedTasks, cfg) -> SupSupMLP:
    data = tasks.data
    return SupSupMLP(num_classes=data.num_classes, in_chans=data.in_chans, img_size=data.img_size,
                     hidden=cfg.hidden, num_tasks=len(tasks), sparsity=cfg.sparsity)


def scores_optimizer(task: int, lr: float):
    """`model -> Adam` over the scores of `task` alone (what `engine.train.train` takes as its optimizer)."""
    return lambda model: torch.optim.Adam(task_scores(model, task), lr=lr)


def learn_supermasks(ctx, model: SupSupMLP, tasks: PermutedTasks, cfg, seed: int) -> list[float]:
    """Learn task 0, 1, ... in turn, each by training its own scores only (Adam, `cfg.lr`, `cfg.steps` batches of
    `cfg.batch_size`, through the engine); the test accuracy of each task right after it was learned."""
    accuracies = []
    for t in range(len(tasks)):
        task = tasks.task(t)
        set_task(model, t)
        train(model, task.train, steps=cfg.steps, batch_size=cfg.batch_size, schedule="constant", seed=seed + t,
              optimizer=scores_optimizer(t, cfg.lr), device=ctx.device,
              progress=ctx.progress, desc=f"SupSup task {t}")
        accuracies.append(evaluate(model, task.test, device=ctx.device)["accuracy"])
    return accuracies


def supsup_accuracy(ctx, model: SupSupMLP, tasks: PermutedTasks) -> list[float]:
    """The test accuracy of every task with its own mask (task identity given)."""
    return [evaluate(set_task(model, t), tasks.test(t), device=ctx.device)["accuracy"] for t in range(len(tasks))]


def dense_net(tasks: PermutedTasks, cfg) -> nn.Module:
    """The standard network of the same shape: trained weights and biases, PyTorch's default initialisation."""
    data = tasks.data
    widths = (data.in_chans * data.img_size ** 2, *cfg.hidden)
    layers = [nn.Flatten()]
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], data.num_classes))


def fine_tune_sequentially(ctx, tasks: PermutedTasks, cfg, lr: float, seed: int) -> np.ndarray:
    """Train the dense network on task 0, 1, ... in turn (Adam at `lr`, the same steps and batches as SupSup);
    the accuracy matrix A[i, j] on task j after learning tasks 0..i (NaN for j > i)."""
    ctx.seed(seed)
    model = dense_net(tasks, cfg)
    acc = np.full((len(tasks), len(tasks)), np.nan)
    for i in range(len(tasks)):
        train(model, tasks.task(i).train, steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adam", lr=lr,
              schedule="constant", seed=seed + i, device=ctx.device, progress=ctx.progress,
              desc=f"fine-tuning lr {lr:g} task {i}")
        for j in range(i + 1):
            acc[i, j] = evaluate(model, tasks.test(j), device=ctx.device)["accuracy"]
    return acc


COMMON = dict(permutation_seed=0, batch_size=128, seeds=1)
QUICK = dict(COMMON, hidden=(64, 64), sparsity=0.5, steps=30, lr=3e-3, n_test=None)
FULL = dict(COMMON, tasks=10, hidden=(256, 256), sparsity=0.5, steps=400, lr=1e-3, n_test=5000)


@claim(
    paper="supsup",
    statement=("SupSup learns 10 permuted Fashion-MNIST tasks one after another with no forgetting (Sec. 3-4, "
               "Fig. 3: PermutedMNIST with the task given), while the same network trained as usual on the tasks in "
               "turn (fine-tuning) forgets the earlier ones."),
    criterion=("SupSup: every task's accuracy after all 10 tasks is within 0.5 points of its accuracy right after it "
               "was learned, and their mean is >= 75%; fine-tuning at its best lr of {1e-4, 3e-4, 1e-3} (best mean "
               "final accuracy) forgets: its accuracy on tasks 1..9 drops by >= 5 points on average from right after "
               "learning each to the end, and its mean final accuracy is >= 5 points below SupSup's"),
    quick=dict(QUICK, tasks=3, dense_lrs=(1e-3,)),
    full=dict(FULL, dense_lrs=(1e-4, 3e-4, 1e-3)),
)
def no_forgetting(cfg, ctx) -> ClaimResult:
    tasks = permuted_tasks(ctx, cfg)
    start = time.perf_counter()
    ctx.seed(0)
    model = supsup_net(tasks, cfg)
    just_learned = learn_supermasks(ctx, model, tasks, cfg, seed=0)
    final = supsup_accuracy(ctx, model, tasks)
    supsup_seconds = time.perf_counter() - start
    forgetting = [a - b for a, b in zip(just_learned, final)]

    dense = {lr: fine_tune_sequentially(ctx, tasks, cfg, lr, seed=0) for lr in cfg.dense_lrs}
    best = max(dense, key=lambda lr: np.mean(dense[lr][-1]))
    acc = dense[best]
    dense_drop = [acc[j, j] - acc[-1, j] for j in range(len(tasks) - 1)]
    supsup_mean, dense_mean = float(np.mean(final)), float(np.mean(acc[-1]))
    passed = (max(abs(f) for f in forgetting) <= 0.5 and supsup_mean >= 75.0
              and float(np.mean(dense_drop)) >= 5.0 and dense_mean <= supsup_mean - 5.0)
    metrics = {
        "supsup_accuracy_just_learned": just_learned, "supsup_accuracy_final": final,
        "supsup_forgetting": forgetting, "supsup_max_forgetting": max(abs(f) for f in forgetting),
        "supsup_mean_final_accuracy": supsup_mean, "supsup_seconds": supsup_seconds,
        "fine_tuning_best_lr": best,
        "fine_tuning_mean_final_accuracy": {lr: float(np.mean(a[-1])) for lr, a in dense.items()},
        "fine_tuning_accuracy_matrix": {lr: [row[:i + 1] for i, row in enumerate(a.round(2).tolist())]
                                        for lr, a in dense.items()},      # row i: tasks 0..i after learning task i
        "fine_tuning_mean_drop": float(np.mean(dense_drop)), "fine_tuning_drop": dense_drop,
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_forgetting(just_learned, final, dense, best),
                       notes=f"{len(tasks)} tasks of permuted {tasks.data.name}, {cfg.steps} batches of "
                             f"{cfg.batch_size} per task, hidden {cfg.hidden}, sparsity {cfg.sparsity}, test "
                             f"accuracy on {len(tasks.base_test)} images per task")


def plot_forgetting(just_learned, final, dense: dict, best: float):
    """Left: each task's accuracy right after learning it and after the last task (SupSup, fine-tuning at its best
    lr). Right: the mean accuracy over the tasks seen so far, as tasks are added (cf. Fig. 3)."""
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    tasks = np.arange(1, len(final) + 1)
    acc = dense[best]
    ax.plot(tasks, just_learned, "o-", color="tab:red", label="SupSup, just learned")
    ax.plot(tasks, final, "x--", color="darkred", label="SupSup, after all tasks")
    ax.plot(tasks, np.diag(acc), "o-", color="tab:blue", label=f"fine-tuning (lr {best:g}), just learned")
    ax.plot(tasks, acc[-1], "x--", color="navy", label="fine-tuning, after all tasks")
    ax.set(xlabel="task", ylabel="test accuracy (%)", title="each task: right after learning it vs at the end")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    bx.plot(tasks, [np.mean(final[:i]) for i in tasks], "o-", color="tab:red", label="SupSup (task given)")
    for lr, a in dense.items():
        bx.plot(tasks, [np.nanmean(a[i - 1, :i]) for i in tasks], ".-", alpha=1.0 if lr == best else 0.4,
                label=f"fine-tuning, lr {lr:g}")
    bx.set(xlabel="tasks learned", ylabel="mean accuracy over tasks seen (%)",
           title="average accuracy as tasks are added")
    bx.legend(fontsize=8)
    bx.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@claim(
    paper="supsup",
    statement=("One-shot task inference (Sec. 3.3, Eq. 5): given a batch of 128 test images of one of 10 learned "
               "permuted Fashion-MNIST tasks, the argmax of -dH/dalpha at alpha = 1/10 names the task >= 90% of the "
               "time (chance: 10%)."),
    criterion=("task inference accuracy over 5 test batches of 128 images per task (50 batches) >= 90%; control: "
               "the same inference with the masks before training (scores at their initialisation) <= 30%"),
    quick=dict(QUICK, tasks=3, batches_per_task=2, inference_batch=32),
    full=dict(FULL, batches_per_task=5, inference_batch=128),
)
def task_inference(cfg, ctx) -> ClaimResult:
    tasks = permuted_tasks(ctx, cfg)
    ctx.seed(0)
    model = supsup_net(tasks, cfg)
    untrained = infer_tasks(model, tasks, cfg)                  # the control: the same network before training
    learned = learn_supermasks(ctx, model, tasks, cfg, seed=0)
    trained = infer_tasks(model, tasks, cfg)
    correct = {name: float(100 * np.mean([t == i for t, i in guesses])) for name, guesses in
               (("trained", trained), ("untrained", untrained))}
    inferred_accuracy = classify_with_inferred_task(ctx, model, tasks, cfg)
    passed = correct["trained"] >= 90.0 and correct["untrained"] <= 30.0
    metrics = {
        "task_inference_accuracy": correct["trained"], "untrained_task_inference_accuracy": correct["untrained"],
        "chance": 100.0 / len(tasks), "trials": len(trained),
        "accuracy_task_given": learned, "mean_accuracy_task_given": float(np.mean(learned)),
        "mean_accuracy_task_inferred": inferred_accuracy,
        "confusions": [[t, i] for t, i in trained if t != i],
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_inference(trained, untrained, len(tasks)),
                       notes=f"{len(tasks)} tasks, batches of {cfg.inference_batch} test images, "
                             f"{cfg.batches_per_task} per task")


def inference_batches(tasks: PermutedTasks, cfg):
    """(task, batch) pairs: the first `batches_per_task` batches of `inference_batch` test images of every task."""
    for t in range(len(tasks)):
        x, y = tasks.test(t).tensors
        for b in range(cfg.batches_per_task):
            yield t, x[b * cfg.inference_batch:(b + 1) * cfg.inference_batch], y[b * cfg.inference_batch:
                                                                                 (b + 1) * cfg.inference_batch]


def infer_tasks(model: SupSupMLP, tasks: PermutedTasks, cfg) -> list[tuple[int, int]]:
    """(true task, inferred task) of every test batch (Eq. 5), the model in eval mode."""
    model.eval()
    return [(t, infer_task(model, x)) for t, x, _ in inference_batches(tasks, cfg)]


@torch.no_grad()
def classify_with_inferred_task(ctx, model: SupSupMLP, tasks: PermutedTasks, cfg) -> float:
    """The accuracy on the test batches when each batch is classified with the mask of its inferred task."""
    correct = count = 0
    for _, x, y in inference_batches(tasks, cfg):
        with torch.enable_grad():
            task = infer_task(model, x)
        correct += int((set_task(model, task)(x).argmax(1) == y).sum())
        count += len(y)
    return 100.0 * correct / count


def plot_inference(trained, untrained, num_tasks: int):
    """The confusion matrix of task inference (true task vs inferred task), trained masks and untrained control."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, guesses, title in ((axes[0], trained, "learned masks"), (axes[1], untrained, "untrained masks (control)")):
        confusion = np.zeros((num_tasks, num_tasks))
        for t, i in guesses:
            confusion[t, i] += 1
        ax.imshow(confusion, cmap="Blues")
        share = 100 * np.mean([t == i for t, i in guesses])
        ax.set(xlabel="inferred task", ylabel="true task", title=f"{title}: {share:.0f}% right")
    fig.suptitle(f"one-shot task inference by the entropy gradient, {num_tasks} tasks (chance {100 / num_tasks:.0f}%)")
    fig.tight_layout()
    return fig
