"""Winning tickets and the random re-initialisation control (Frankle & Carbin 2018, Sec. 2, Fig. 3-4).

Sec. 2 prunes LeNet-300-100 iteratively on MNIST (20% of the hidden layers' weights and 10% of the output layer's
per round, each round reset to the original initialisation) and finds subnetworks that reach the dense network's
test accuracy down to a few percent of the weights; the same masks with weights drawn anew ("randomly
reinitialized", Fig. 4) learn more slowly and end less accurate as the network shrinks. We run the same procedure
on Fashion-MNIST: one Trainer run per seed with the `IterativeMagnitudePruning` hook (the paper's rates, Adam at
the paper's 1.2e-3, batch 60, every round trained for `steps` iterations and evaluated on the test set at its end),
then, at the sparsity levels `control_rounds`, the ticket's mask with a fresh Glorot initialisation trained the same
way. Scaled down: `steps` iterations per round instead of the paper's 50,000 (see README.md).
"""

from __future__ import annotations

import numpy as np
import torch

from ...engine.claims import ClaimResult, claim
from ...engine.train import evaluate
from ...engine.trainer import Trainer
from .models import PAPER_TRAINING, lenet_300_100
from .pruning import layer_rates, masks_of
from .ticket import IterativeMagnitudePruning

REINIT_SEED = 10_000        # the random re-initialisation of seed s draws its weights with seed REINIT_SEED + s


def train_lenet(model, data, cfg, seed: int, hook: IterativeMagnitudePruning, ctx, desc: str) -> None:
    """Fig. 2's recipe for LeNet (Adam, constant learning rate, batch 60) through the Trainer and the pruning hook."""
    recipe = PAPER_TRAINING["lenet_300_100"]
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    Trainer(model, optimizer, steps=hook.total_steps, data=data.train, batch_size=recipe["batch_size"],
            hooks=[hook], seed=seed, device=ctx.device, progress=ctx.progress, desc=desc).fit()


def keeping_masks(masks: dict, on_round_end):
    """`on_round_end`, after storing the masks that training `t` ran with in `masks[t]` (t = 0, 1, ...)."""

    def end_of_round(trainer) -> dict:
        masks[len(masks)] = {k: m.clone() for k, m in masks_of(trainer.models["model"]).items()}
        return on_round_end(trainer)

    return end_of_round


@claim(
    paper="lottery_ticket",
    name="winning_tickets",
    statement=("Iterative magnitude pruning with resetting to the original initialisation finds LeNet-300-100 "
               "subnetworks with 10-20% of the weights that match the dense network's test accuracy, and the same "
               "masks randomly re-initialised are clearly worse at <= 5% of the weights (Sec. 2, Fig. 3-4)."),
    criterion=("mean test accuracy over seeds, each round trained `steps` iterations: at every round with 10-20% of "
               "the weights left, ticket >= dense - 0.5 points; at every control round with <= 5% left, random "
               "re-initialisation <= ticket - 1 point"),
    quick=dict(steps=20, rounds=2, control_rounds=(2,), lr=1.2e-3, seeds=1),
    full=dict(steps=1000, rounds=17, control_rounds=(8, 11, 14, 17), lr=1.2e-3, seeds=3),
)
def winning_tickets(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("fashion-mnist", fallback="digits")
    test_accuracy = lambda trainer: {"accuracy": evaluate(trainer.models["model"], data.test,  # noqa: E731
                                                          device=ctx.device)["accuracy"]}
    rates = PAPER_TRAINING["lenet_300_100"]["rates"]
    build = lambda: lenet_300_100(num_classes=data.num_classes, in_chans=data.in_chans,  # noqa: E731
                                  img_size=data.img_size)
    ticket = {r: [] for r in range(cfg.rounds + 1)}          # accuracy of round r's ticket (0: the dense net)
    left = {r: [] for r in range(cfg.rounds + 1)}            # its fraction of weights left
    reinit = {r: [] for r in cfg.control_rounds}
    for seed in range(cfg.seeds):
        ctx.seed(seed)
        model, masks = build(), {}
        hook = IterativeMagnitudePruning(round_steps=cfg.steps, rounds=cfg.rounds, rates=layer_rates(model, **rates),
                                         on_round_end=keeping_masks(masks, test_accuracy))
        train_lenet(model, data, cfg, seed, hook, ctx, desc=f"IMP seed {seed}")
        for entry in hook.log:
            ticket[entry["round"]].append(entry["accuracy"])
            left[entry["round"]].append(entry["weights_left"])
        for r in cfg.control_rounds:                         # the same mask, weights drawn anew (Sec. 2, Fig. 4)
            ctx.seed(REINIT_SEED + seed)
            control = IterativeMagnitudePruning(round_steps=cfg.steps, rounds=0, masks=masks[r],
                                                on_round_end=test_accuracy)
            train_lenet(build(), data, cfg, seed, control, ctx, desc=f"reinit round {r} seed {seed}")
            reinit[r].append(control.log[0]["accuracy"])

    mean = lambda d: {r: float(np.mean(v)) for r, v in d.items()}  # noqa: E731
    acc, frac, re = mean(ticket), mean(left), mean(reinit)
    matching = [r for r in ticket if 0.10 <= frac[r] <= 0.20]
    sparse = [r for r in reinit if frac[r] <= 0.05]
    match_gap = {r: acc[r] - acc[0] for r in matching}
    reinit_gap = {r: acc[r] - re[r] for r in reinit}
    passed = bool(matching and sparse and all(g >= -0.5 for g in match_gap.values())
                  and all(reinit_gap[r] >= 1.0 for r in sparse))
    metrics = {
        "weights_left": frac, "ticket_accuracy": acc, "reinit_accuracy": re, "dense_accuracy": acc[0],
        "ticket_accuracy_per_seed": ticket, "reinit_accuracy_per_seed": reinit,
        "rounds_with_10_to_20_percent": matching, "ticket_minus_dense": match_gap,
        "control_rounds_with_at_most_5_percent": sparse, "ticket_minus_reinit": reinit_gap,
    }
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_tickets(frac, ticket, reinit, data.name, cfg),
                       notes=f"{cfg.steps} iterations per round, batch 60, Adam lr {cfg.lr}; test accuracy at the "
                             f"end of each round on {len(data.test)} images")


def plot_tickets(frac: dict, ticket: dict, reinit: dict, dataset: str, cfg):
    """Fig. 3-4 redrawn: test accuracy against the percentage of weights left (log axis), winning tickets and
    their random re-initialisations, mean and spread over seeds; the dense accuracy as a dotted line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, runs, style, color in (("winning ticket", ticket, "o-", "tab:blue"),
                                     ("random reinit", reinit, "s--", "tab:red")):
        rounds = sorted(runs)
        x = [100 * frac[r] for r in rounds]
        m = np.array([np.mean(runs[r]) for r in rounds])
        ax.plot(x, m, style, color=color, label=name)
        ax.fill_between(x, [min(runs[r]) for r in rounds], [max(runs[r]) for r in rounds], color=color, alpha=0.2)
    ax.axhline(np.mean(ticket[0]), ls=":", color="gray", label="dense")
    ax.axvspan(10, 20, color="green", alpha=0.07)
    ax.axvspan(min(100 * f for f in frac.values()) * 0.9, 5, color="red", alpha=0.05)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights left (log scale)")
    ax.set_ylabel("test accuracy, %")
    seeds = len(ticket[0])
    ax.set_title(f"LeNet-300-100 on {dataset}, {cfg.steps} iterations per round, {seeds} seed{'s' * (seeds > 1)}")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
