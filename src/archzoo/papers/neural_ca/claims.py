"""The claims of Growing Neural Cellular Automata (Mordvintsev et al., Distill 2020), at CPU scale.

1. `grows_target` (Experiment 1, "Learning to Grow"): a CA trained from the seed alone grows the drawn target
   from one cell; the untrained CA (its update starts at zero) is the control.
2. `regenerates_after_damage` (Experiment 3 against Experiment 1): trained with the sample pool and damaged
   samples, the CA regrows a grown pattern after a disc of it is erased; trained from the seed only, with the same
   budget, it does not.

Both claims train the article's CA (16 channels, 48 -> 128 -> 16, fire rate 0.5, batch 8, pool 1,024, 3 damaged
samples per batch, Adam 2e-3 with normalised gradients) on a smaller grid, for fewer CA steps per rollout and far
fewer training steps than the article (see README.md). Every evaluation draws its fire masks and damage from its
own fixed seeds, so the models are compared on the same rollouts' randomness.
"""

from __future__ import annotations

import numpy as np
import torch

from ...engine.claims import ClaimResult, claim
from .ca import NeuralCA
from .target import circle_masks, draw_target, pad_target, psnr, rgba_loss, seed_state, to_rgb
from .training import train_ca

LABELS = {"growing": "growth only (Exp. 1)", "regenerating": "pool + damage (Exp. 3)", "untrained": "untrained CA"}


def make_target(cfg) -> torch.Tensor:
    return pad_target(draw_target(cfg.size), cfg.padding)                       # (4, H, W)


def train(cfg, ctx, target: torch.Tensor, regime: str, seed: int) -> tuple[NeuralCA, list[float]]:
    """A CA trained on `target` in `regime` with the claim's budget."""
    ctx.seed(seed)
    ca = NeuralCA()
    result = train_ca(ca, target, steps=cfg.train_steps, regime=regime, lr=cfg.lr, decay_at=cfg.decay_at,
                      batch_size=cfg.batch_size, pool_size=cfg.pool_size, damage=cfg.damage,
                      min_steps=cfg.min_steps, max_steps=cfg.max_steps, seed=seed, device=ctx.device,
                      progress=ctx.progress, desc=f"{regime} seed {seed}")
    return ca.cpu().eval(), result.losses


@torch.no_grad()
def rollout(ca: NeuralCA, x: torch.Tensor, steps: int, target: torch.Tensor, seed: int):
    """Run `steps` CA steps from `x` with fire masks drawn from `seed`; the states and the mean loss at every step."""
    torch.manual_seed(seed)
    states, losses = [x], [float(rgba_loss(x, target).mean())]
    for _ in range(steps):
        x = ca(x)
        states.append(x)
        losses.append(float(rgba_loss(x, target).mean()))
    return states, losses


# ----------------------------------------------------------------------------- Experiment 1: growth


@claim(
    paper="neural_ca",
    statement=("A CA trained with the article's update rule, perception and masks grows the target pattern from a "
               "single seed cell (Experiment 1), where the untrained CA leaves the seed as it is."),
    criterion=("RGBA MSE against the target after `eval_steps` CA steps from the seed, mean over `eval_samples` "
               "stochastic rollouts: <= 0.1 x the untrained CA's (>= 10 dB better) for every seed"),
    quick=dict(size=8, padding=2, train_steps=3, min_steps=4, max_steps=6, eval_steps=5, eval_samples=2,
               batch_size=4, pool_size=8, damage=1, lr=2e-3, decay_at=0.75, seeds=1),
    full=dict(size=16, padding=4, train_steps=600, min_steps=32, max_steps=48, eval_steps=40, eval_samples=16,
              batch_size=8, pool_size=1024, damage=3, lr=2e-3, decay_at=0.75, seeds=2),
)
def grows_target(cfg, ctx) -> ClaimResult:
    target = make_target(cfg)
    height, width = target.shape[1:]
    start = seed_state(height, width, batch=cfg.eval_samples)
    results = {"untrained": rollout(NeuralCA().eval(), start, 2 * cfg.max_steps, target, seed=1000)}
    per_seed, curves = [], {}
    for s in range(cfg.seeds):
        ca, losses = train(cfg, ctx, target, "growing", s)
        states, trajectory = rollout(ca, start, 2 * cfg.max_steps, target, seed=1000 + s)
        grown = states[cfg.eval_steps]
        per_seed.append({"loss": trajectory[cfg.eval_steps], "psnr": float(psnr(grown, target).mean()),
                         "loss_per_ca_step": trajectory, "training_loss": losses[::max(1, len(losses) // 100)]})
        if s == 0:
            results["growing"], curves = (states, trajectory), losses
    control = results["untrained"][1][cfg.eval_steps]
    ratios = [r["loss"] / control for r in per_seed]
    mean_psnr = float(np.mean([r["psnr"] for r in per_seed]))
    metrics = {"untrained_loss": control, "untrained_psnr": float(psnr(results["untrained"][0][cfg.eval_steps],
                                                                          target).mean()),
               "loss": [r["loss"] for r in per_seed], "psnr": [r["psnr"] for r in per_seed], "mean_psnr": mean_psnr,
               "loss_over_untrained": ratios, "per_seed": per_seed}
    passed = max(ratios) <= 0.1
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_growth(results, curves, target, cfg),
                       notes=f"target {cfg.size}x{cfg.size} on a {height}x{width} grid, {cfg.train_steps} training "
                             f"steps of {cfg.min_steps}-{cfg.max_steps} CA steps")


def show(ax, state: torch.Tensor, title: str) -> None:
    ax.imshow(to_rgb(state[:1])[0].permute(1, 2, 0).numpy())
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def plot_growth(results: dict, training_loss: list[float], target: torch.Tensor, cfg):
    """The growth of the trained CA from the seed (the article's Experiment 1 strip) and the losses."""
    import matplotlib.pyplot as plt

    frames = sorted({0, cfg.eval_steps // 8, cfg.eval_steps // 4, cfg.eval_steps // 2, cfg.eval_steps,
                     2 * cfg.max_steps})
    fig = plt.figure(figsize=(2 * (len(frames) + 1), 6))
    show(fig.add_subplot(2, len(frames) + 1, 1), target[None], "target")
    states, trajectory = results["growing"]
    for i, t in enumerate(frames):
        show(fig.add_subplot(2, len(frames) + 1, i + 2), states[t], f"trained, step {t}")
    ax = fig.add_subplot(2, 2, 3)
    ax.semilogy(training_loss)
    ax.set_xlabel("training step")
    ax.set_ylabel("batch RGBA MSE")
    ax.set_title("training (seed 0)")
    ax = fig.add_subplot(2, 2, 4)
    for name, (_, losses) in results.items():
        ax.semilogy(losses, label=LABELS[name])
    ax.axvline(cfg.eval_steps, color="gray", linestyle=":")
    ax.axvspan(cfg.min_steps, cfg.max_steps, color="gray", alpha=0.15, label="training rollout lengths")
    ax.set_xlabel("CA step from the seed")
    ax.set_ylabel("RGBA MSE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- Experiment 3: regeneration


@claim(
    paper="neural_ca",
    statement=("Trained with the sample pool and damaged samples (Experiment 3), the CA regrows a grown pattern after "
               "a disc of it is erased, where the CA trained from the seed only (Experiment 1) with the same budget "
               "does not."),
    criterion=("Grow `grow_steps` CA steps from the seed, erase a disc (`damages` discs of the training distribution, "
               "one per rollout), run `recover_steps` more; RGBA MSE, mean over discs and seeds. Pool + damage repairs "
               "the damage: its loss after recovery exceeds that of its own undamaged continuation (same fire masks) "
               "by <= 0.25 x the loss the damage added; and growth only ends >= 3 x pool + damage's loss after "
               "recovery"),
    quick=dict(size=8, padding=2, train_steps=3, min_steps=4, max_steps=6, grow_steps=5, recover_steps=5, damages=2,
               batch_size=4, pool_size=8, damage=1, lr=2e-3, decay_at=0.75, seeds=1),
    full=dict(size=16, padding=4, train_steps=300, min_steps=32, max_steps=48, grow_steps=48, recover_steps=48,
              damages=16, batch_size=8, pool_size=1024, damage=3, lr=2e-3, decay_at=0.75, seeds=2),
)
def regenerates_after_damage(cfg, ctx) -> ClaimResult:
    target = make_target(cfg)
    height, width = target.shape[1:]
    regimes = ("growing", "regenerating")
    per_regime = {r: [] for r in regimes}
    shown = {}
    for s, regime in ctx.grid(cfg.seeds, regimes):
        ca, losses = train(cfg, ctx, target, regime, s)
        grown, before = rollout(ca, seed_state(height, width, batch=cfg.damages), cfg.grow_steps, target, 2000 + s)
        discs = circle_masks(cfg.damages, height, width, generator=torch.Generator().manual_seed(3000 + s))
        damaged = grown[-1] * ~discs
        recovered, after = rollout(ca, damaged, cfg.recover_steps, target, 4000 + s)
        _, undamaged = rollout(ca, grown[-1], cfg.recover_steps, target, 4000 + s)
        per_regime[regime].append({"before_damage": before[-1], "damaged": after[0], "recovered": after[-1],
                                   "undamaged_continuation": undamaged[-1], "loss_after_damage": after,
                                   "training_loss": losses[::max(1, len(losses) // 100)]})
        if s == 0:
            shown[regime] = (grown[-1], damaged, recovered[-1], before + after[1:])
    mean = {r: {k: float(np.mean([e[k] for e in per_regime[r]]))
                for k in ("before_damage", "damaged", "recovered", "undamaged_continuation")} for r in regimes}
    pool, growth = mean["regenerating"], mean["growing"]
    unrepaired = {r: (m["recovered"] - m["undamaged_continuation"]) / max(m["damaged"] - m["before_damage"], 1e-12)
                  for r, m in mean.items()}                     # 0: fully repaired, 1: the damage stays as it was
    metrics = {"mean": mean, "per_seed": per_regime, "unrepaired_fraction": unrepaired,
               "growth_recovered_over_pool_recovered": growth["recovered"] / pool["recovered"]}
    passed = unrepaired["regenerating"] <= 0.25 and metrics["growth_recovered_over_pool_recovered"] >= 3.0
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_regeneration(shown, target, cfg),
                       notes=f"target {cfg.size}x{cfg.size} on a {height}x{width} grid, {cfg.train_steps} training "
                             f"steps per regime, {cfg.damages} discs")


def plot_regeneration(shown: dict, target: torch.Tensor, cfg):
    """Grown, damaged and recovered patterns of both regimes (a few discs), and the loss through damage."""
    import matplotlib.pyplot as plt

    examples = min(3, shown["growing"][0].shape[0])
    fig = plt.figure(figsize=(12, 1.6 * 2 * examples))
    rows, cols = 2 * examples, 3
    for r, regime in enumerate(("growing", "regenerating")):
        grown, damaged, recovered, _ = shown[regime]
        for e in range(examples):
            row = r * examples + e
            for c, (state, name) in enumerate(((grown, f"grown ({cfg.grow_steps} steps)"), (damaged, "damaged"),
                                               (recovered, f"+{cfg.recover_steps} steps"))):
                show(fig.add_subplot(rows, cols * 2, row * cols * 2 + c + 1), state[e:e + 1],
                     f"{LABELS[regime]}\n{name}" if c == 0 else name)
    ax = fig.add_subplot(1, 2, 2)
    for regime in ("growing", "regenerating"):
        ax.semilogy(shown[regime][3], label=LABELS[regime])
    ax.axvline(cfg.grow_steps, color="gray", linestyle=":", label="damage")
    ax.set_xlabel("CA step from the seed")
    ax.set_ylabel("RGBA MSE (mean over discs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
