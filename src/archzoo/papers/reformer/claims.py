"""The claims of Reformer (Kitaev et al. 2020, arXiv:2001.04451), at laptop scale.

1. `duplication_hashes` (Sec. 5, Table 2): on the duplication task (sequences 0w0w, causal language modelling,
   scored on the second half) a 1-layer model with LSH attention gets closer to shared-QK full attention as the
   number of hashes grows. Each model is also evaluated with every other attention (the whole of Table 2):
   the weights are the same, only the hashing changes.
2. `reversible_memory` (Sec. 3, Table 3): with reversible layers the peak training memory stays flat as layers are
   added, while the same network with ordinary residual layers grows linearly; and the reversible backward pass
   (which recomputes activations) gives the gradients of the ordinary one.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ...core.sequence import SequenceTransformer, token_accuracy
from ...engine.bench import bench_module, method_slopes
from ...engine.claims import ClaimResult, claim, mean_over_seeds
from .models import ReformerLM

FULL = "full"                      # the shared-QK full attention of Table 2


def attention_name(method) -> str:
    return "reformer_shared_qk" if method == FULL else "reformer"


def attention_kwargs(method, chunk_length: int) -> dict:
    return {} if method == FULL else dict(chunk_length=chunk_length, n_hashes=method)


def method_label(method) -> str:
    return "full attention" if method == FULL else f"LSH-{method}"


def duplication_model(task, cfg, method) -> SequenceTransformer:
    """The 1-layer causal model of Sec. 5 (scaled down): only the attention differs between methods.

    Position embeddings start at N(0, pos_std^2): at SequenceTransformer's default 0.02 they are 50 times smaller
    than the N(0, 1) token embeddings, so after the pre-attention LayerNorm the queries barely depend on position
    and every model sits on a plateau for hundreds of steps before it finds the copy offset (README, scaling)."""
    model = SequenceTransformer(task.vocab_size, task.num_classes, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                                dim_head=cfg.dim // cfg.heads, max_len=cfg.length, attention=attention_name(method),
                                attention_kwargs=attention_kwargs(method, cfg.chunk_length), causal=True,
                                per_token=True)
    torch.nn.init.normal_(model.pos.weight, std=cfg.pos_std)
    return model


@claim(
    paper="reformer",
    statement=("Duplication task (Sec. 5, Table 2): a 1-layer model trained and evaluated with LSH attention gets "
               "closer to full (shared-QK) attention as the number of hashes grows; in Table 2 LSH-1, LSH-2 and LSH-4 "
               "reach 77.9%, 98.1% and 99.9% (trained and evaluated alike) against 100% for full attention."),
    criterion=("mean test accuracy over seeds (second-half tokens, each model evaluated with the attention it was "
               "trained with): full >= 90 (the task is learned), accuracy non-decreasing in n_hashes within 2 points "
               "(LSH-1 <= LSH-2 + 2, LSH-2 <= LSH-4 + 2), and full - LSH-4 <= 2 points (Table 2's LSH-2 gap; "
               "LSH-4's is 0.1)"),
    quick=dict(length=32, dim=32, depth=1, heads=4, chunk_length=4, pos_std=1.0, hashes=(1, 2), eval_hashes=(1, 2),
               n_train=64, n_test=8, steps=2, batch_size=8, lr=3e-3, warmup_steps=1, seeds=1),
    full=dict(length=64, dim=64, depth=1, heads=4, chunk_length=8, pos_std=1.0, hashes=(1, 2, 4),
              eval_hashes=(1, 2, 4, 8), n_train=20000, n_test=200, steps=400, batch_size=32, lr=3e-3, warmup_steps=40,
              seeds=2),
)
def duplication_hashes(cfg, ctx) -> ClaimResult:
    task = ctx.dataset("duplication", length=cfg.length, n_train=cfg.n_train, n_test=cfg.n_test, seed=0)
    trained = [FULL, *cfg.hashes]
    evaluated = [FULL, *cfg.eval_hashes]
    table = {method_label(t): {method_label(e): [] for e in evaluated} for t in trained}
    curves = {method_label(t): [] for t in trained}
    for seed, method in ctx.grid(cfg.seeds, trained):
        ctx.seed(seed)
        model = duplication_model(task, cfg, method)
        fit = ctx.fit_and_eval(model, task, steps=cfg.steps, batch_size=cfg.batch_size, seed=seed, lr=cfg.lr,
                               warmup_steps=cfg.warmup_steps, schedule="constant", eval_train=False,
                               desc=f"{method_label(method)} seed {seed}")
        curves[method_label(method)].append([h["loss"] for h in fit.history])
        for e in evaluated:                                     # the same weights, another attention (Table 2)
            evaluator = duplication_model(task, cfg, e)
            evaluator.load_state_dict(model.state_dict())
            torch.manual_seed(1000 + seed)                      # the evaluation's hash rotations
            table[method_label(method)][method_label(e)].append(token_accuracy(evaluator, task.test)["accuracy"])

    mean = {t: mean_over_seeds(row) for t, row in table.items()}
    acc = {t: mean[method_label(t)][method_label(t)] for t in trained}         # trained and evaluated alike
    h = sorted(cfg.hashes)
    monotone = all(acc[a] <= acc[b] + 2.0 for a, b in zip(h, h[1:]))
    passed = acc[FULL] >= 90.0 and monotone and acc[FULL] - acc[h[-1]] <= 2.0
    window = max(1, cfg.steps // 25)
    smooth = {t: np.convolve(np.mean(c, axis=0), np.ones(window) / window, mode="valid").tolist()
              for t, c in curves.items()}
    metrics = {"accuracy": {method_label(t): acc[t] for t in trained}, "table2": mean, "table2_per_seed": table,
               "train_loss_curves": smooth, "chance": 100.0 / (task.num_classes - 1)}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_table2(mean, curves=smooth, window=window),
                       notes=f"accuracy over the {cfg.length // 2 - 1} scored tokens of {len(task.test)} test "
                             f"sequences; loss curves: running mean over {window} steps, mean over seeds")


def plot_table2(table: dict, curves: dict, window: int):
    """Table 2 redrawn as a heat map (rows: trained with, columns: evaluated with), and the training loss curves."""
    import matplotlib.pyplot as plt

    rows, cols = list(table), list(next(iter(table.values())))
    values = np.array([[table[r][c] for c in cols] for r in rows])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw=dict(width_ratios=(1.2, 1)))
    im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", color="w" if values[i, j] < 60 else "k")
    ax.set_xticks(range(len(cols)), [f"eval {c}" for c in cols], rotation=20)
    ax.set_yticks(range(len(rows)), [f"train {r}" for r in rows])
    ax.set_title("duplication: test accuracy (%) (cf. Table 2)")
    fig.colorbar(im, ax=ax, fraction=0.04)
    for label, curve in curves.items():
        ax2.plot(np.arange(len(curve)) + window, curve, label=label)
    ax2.set(xlabel="step", ylabel=f"training loss (running mean, {window} steps)", title="training")
    ax2.grid(alpha=0.3)
    ax2.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 2: reversible memory


def reversible_lm(cfg, depth: int, reversible: bool, dtype=torch.float32) -> ReformerLM:
    torch.manual_seed(0)
    return ReformerLM(cfg.vocab_size, dim=cfg.dim, depth=depth, heads=cfg.heads, dim_head=cfg.dim // cfg.heads,
                      ff_dim=4 * cfg.dim, max_len=cfg.length, reversible=reversible, ff_chunks=cfg.ff_chunks,
                      attention_kwargs=dict(chunk_length=cfg.chunk_length, n_hashes=cfg.n_hashes)).to(dtype)


def gradient_difference(cfg, seed: int) -> float:
    """max |grad_reversible - grad_standard| / max |grad_standard| over all parameters, in float64, for the same
    weights, input and random draws (hash rotations, dropout)."""
    rev = reversible_lm(cfg, cfg.grad_depth, True, torch.float64)
    rev.train()
    std = copy.deepcopy(rev)
    std.layers.reversible = False
    ids = torch.randint(0, cfg.vocab_size, (2, cfg.grad_length), generator=torch.Generator().manual_seed(seed))
    for model in (rev, std):                                    # no training: the claim is about the gradients
        torch.manual_seed(seed)                                 # themselves, so it backpropagates once by hand
        logits = model(ids)
        F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(rev.parameters(), std.parameters()))
    return diff / max(float(p.grad.abs().max()) for p in std.parameters())


@claim(
    paper="reformer",
    statement=("Reversible layers (Sec. 3, Table 3): the peak memory of a training step stays flat as layers are "
               "added, while the same network with ordinary residual layers grows linearly with depth; the "
               "reversible backward pass gives the same gradients."),
    criterion=("log-log slope of peak training memory against depth (depths listed in the config): reversible "
               "<= 0.15, standard >= 0.75; and max |grad_rev - grad_std| / max |grad_std| <= 1e-8 in float64 for "
               "every seed"),
    quick=dict(depths=(1, 2), length=64, batch_size=1, vocab_size=64, dim=32, heads=2, chunk_length=16, n_hashes=2,
               ff_chunks=2, grad_depth=2, grad_length=32, repeats=1, seeds=1),
    full=dict(depths=(1, 2, 4, 8, 16), length=1024, batch_size=2, vocab_size=256, dim=64, heads=4, chunk_length=32,
              n_hashes=2, ff_chunks=4, grad_depth=4, grad_length=128, repeats=3, seeds=3),
)
def reversible_memory(cfg, ctx) -> ClaimResult:
    ids = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.length), generator=torch.Generator().manual_seed(0))
    rows = {}
    for kind, reversible in (("reversible", True), ("standard", False)):
        rows[kind] = bench_module(lambda depth, r=reversible: reversible_lm(cfg, depth, r), lambda depth: (ids,),
                                  list(cfg.depths), repeats=cfg.repeats, warmup=1, name=kind, device=ctx.device)
    peak = {k: [r["peak_mb"] for r in v] for k, v in rows.items()}
    time_ms = {k: [r["time_ms"] for r in v] for k, v in rows.items()}
    fitted = method_slopes([r for v in rows.values() for r in v], keys=("peak_mb",))     # log-log against depth
    slope = {k: s["peak_mb"] for k, s in fitted.items()}
    grad_diff = [gradient_difference(cfg, seed) for seed in range(cfg.seeds)]
    passed = slope["reversible"] <= 0.15 and slope["standard"] >= 0.75 and max(grad_diff) <= 1e-8
    metrics = {"depths": list(cfg.depths), "peak_mb": peak, "time_ms": time_ms, "memory_slope": slope,
               "grad_rel_diff_per_seed": grad_diff, "grad_rel_diff_max": max(grad_diff),
               "memory_ratio_at_max_depth": peak["standard"][-1] / peak["reversible"][-1],
               "time_ratio_at_max_depth": time_ms["reversible"][-1] / time_ms["standard"][-1]}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_memory(cfg.depths, peak, time_ms, slope),
                       notes=f"batch {cfg.batch_size} x {cfg.length} tokens; peak = tensor bytes allocated by one "
                             "forward+backward beyond the parameters (archzoo.engine.bench.peak_memory)")


def plot_memory(depths, peak: dict, time_ms: dict, slope: dict):
    """Peak training memory and step time against depth, reversible and standard (cf. Table 3's memory column)."""
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for kind, style in (("standard", "o--"), ("reversible", "o-")):
        ax.plot(depths, peak[kind], style, label=f"{kind} (log-log slope {slope[kind]:.2f})")
        ax2.plot(depths, time_ms[kind], style, label=kind)
    ax.set(xlabel="layers", ylabel="peak memory of a training step (MB)", title="memory vs depth")
    ax2.set(xlabel="layers", ylabel="forward + backward (ms)", title="time vs depth")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    return fig
