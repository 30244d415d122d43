r"""The claim of Sparse is Enough in Scaling Transformers (arXiv:2111.12763), on character-level language modelling
of CPython's docs and on cached single-token decoding.

`sparse_decoding`: with sparse feed-forward and sparse QKV layers, unbatched decoding is several times faster than
the dense Transformer's, at a small loss gap (the abstract: "the same perplexity as the standard
Transformer with the same number of parameters").
"""

from __future__ import annotations

import numpy as np
import torch

from ...engine.claims import ClaimResult, claim
from ..switch_transformer.training import train_lm
from .decoding import decoding_rows
from .models import KINDS, TerraformerLM, comparison_lm

MIN_SPEEDUP = 2.0            # dense ms/token / sparse ms/token at the largest d_ff
MAX_GAP = 0.03               # (sparse - dense) final validation loss / dense, mean over seeds
CRITERION = (f"decoding (batch 1, cached, median over repeats) at the largest d_ff is >= {MIN_SPEEDUP:g}x faster with "
             f"sparse FFN + sparse QKV than dense; and after training the same d_model / d_ff through the Trainer "
             f"(each model at the best learning rate of its own sweep), the mean final validation loss of the LM with "
             f"sparse FFN and that of the LM with sparse FFN + sparse QKV each exceed the dense LM's by <= "
             f"{MAX_GAP:.0%} of it")


def trained_lm(cfg, vocab_size: int, kind: str) -> TerraformerLM:
    return comparison_lm(vocab_size, kind, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, ff_dim=cfg.ff_dim,
                         block_size=cfg.block_size, max_len=cfg.block)


def decode_ms_per_token(cfg) -> dict:
    """{kind: {d_ff: ms per token}} of cached decoding at batch 1 (`decoding_rows`) at d_model `cfg.speed_dim`,
    `cfg.speed_heads` heads, blocks of `cfg.block_size`, each d_ff of `cfg.speed_ff_dims`; untrained models,
    since the cost does not depend on the weights."""
    def make(kind, d_ff):
        return comparison_lm(256, kind, dim=cfg.speed_dim, depth=cfg.depth, heads=cfg.speed_heads, ff_dim=d_ff,
                             block_size=cfg.block_size, max_len=cfg.decode_tokens)

    torch.manual_seed(0)
    rows = decoding_rows(make, cfg.speed_ff_dims, cfg.decode_tokens, repeats=cfg.repeats, warmup=1)
    return {kind: {row["d_ff"]: row["ms_per_token"] for row in rows if row["method"] == kind}
            for kind in ("sparse", "dense")}


LM = dict(dim=64, depth=2, heads=4, ff_dim=512, block_size=32, block=64, batch=16, warmup=30, val_windows=128,
          schedule="cosine", speed_dim=512, speed_heads=8, decode_tokens=32)


@claim(
    paper="terraformer",
    statement=("Sparse feed-forward (one unit per block of N chosen by a low-rank controller) and sparse QKV "
               "(multiplicative layer + convolution) make unbatched cached decoding several times faster than the "
               "dense Transformer as d_ff grows, while each sparse layer keeps the dense model's loss within a small "
               "gap (abstract; Sec. 3.1-3.2)."),
    criterion=CRITERION,
    quick=dict(LM, dim=16, heads=2, ff_dim=64, block=16, batch=4, warmup=2, val_windows=4, eval_every=2, steps=4,
               lrs=(3e-3,), seeds=1, block_size=8, speed_dim=32, speed_heads=2, speed_ff_dims=(64, 256),
               decode_tokens=4, repeats=1),
    full=dict(LM, steps=300, eval_every=50, lrs=(5e-3, 1e-2, 2e-2), seeds=2, speed_ff_dims=(2048, 8192, 32768),
              repeats=5),
)
def sparse_decoding(cfg, ctx) -> ClaimResult:
    data = ctx.dataset("pydoc")
    vocab = data.tokenizer.vocab_size
    curves, sweeps, best = {}, {}, {}
    for kind in KINDS:
        sweeps[kind] = {}
        for lr in cfg.lrs:                                          # each model's own learning rate (seed 0)
            ctx.seed(0)
            sweeps[kind][lr] = train_lm(cfg, data, trained_lm(cfg, vocab, kind), lr=lr, seed=0, progress=ctx.progress)
        best[kind] = min(cfg.lrs, key=lambda lr: sweeps[kind][lr]["val_loss"][-1])
        curves[kind] = [sweeps[kind][best[kind]]]
        for seed in range(1, cfg.seeds):
            ctx.seed(seed)
            curves[kind].append(train_lm(cfg, data, trained_lm(cfg, vocab, kind), lr=best[kind], seed=seed,
                                         progress=ctx.progress))
    finals = {kind: [c["val_loss"][-1] for c in runs] for kind, runs in curves.items()}
    mean = {kind: float(np.mean(v)) for kind, v in finals.items()}
    gap = {kind: (mean[kind] - mean["dense"]) / mean["dense"] for kind in ("sparse_ff", "sparse")}
    ms = decode_ms_per_token(cfg)
    speedup = {d_ff: ms["dense"][d_ff] / ms["sparse"][d_ff] for d_ff in cfg.speed_ff_dims}
    top = speedup[max(cfg.speed_ff_dims)]
    passed = top >= MIN_SPEEDUP and max(gap.values()) <= MAX_GAP
    metrics = {"speedup": speedup, "speedup_at_largest_d_ff": top, "ms_per_token": ms, "loss_gap": gap,
               "final_val_loss": finals, "mean_final_val_loss": mean, "lr": best,
               "lr_sweep": {kind: {lr: r["val_loss"][-1] for lr, r in s.items()} for kind, s in sweeps.items()},
               "params": {kind: runs[0]["params"] for kind, runs in curves.items()},
               "steps": curves["dense"][0]["steps"],
               "mean_val_loss": {kind: np.mean([c["val_loss"] for c in runs], 0).tolist()
                                 for kind, runs in curves.items()}}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot(metrics, cfg))


def plot(metrics: dict, cfg):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    d_ffs = list(cfg.speed_ff_dims)
    labels = {"dense": "dense FFN + dense QKV", "sparse_ff": f"sparse FFN (N={cfg.block_size}) + dense QKV",
              "sparse": f"sparse FFN (N={cfg.block_size}) + sparse QKV"}
    for kind in ("dense", "sparse"):
        ax1.plot(d_ffs, [metrics["ms_per_token"][kind][d] for d in d_ffs], "o-", label=labels[kind])
    for kind, label in labels.items():
        ax2.plot(metrics["steps"], metrics["mean_val_loss"][kind],
                 label=f"{label}, lr {metrics['lr'][kind]:g}: {metrics['mean_final_val_loss'][kind]:.3f}")
    for d in d_ffs:
        ax1.annotate(f"{metrics['speedup'][d]:.1f}x", (d, metrics["ms_per_token"]["sparse"][d]),
                     textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax1.set(xscale="log", yscale="log", xticks=d_ffs, xticklabels=[f"{d:,}" for d in d_ffs], xlabel="d_ff",
            ylabel="ms per token",
            title=f"cached decoding, batch 1, d_model {cfg.speed_dim}, {cfg.depth} layers")
    ax1.xaxis.set_minor_locator(plt.NullLocator())
    ax2.set(xlabel="training step", ylabel="validation loss (nats/char)", ylim=(None, 3.5),
            title=f"pydoc characters, d_model {cfg.dim}, d_ff {cfg.ff_dim}, {cfg.seeds} seeds")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
