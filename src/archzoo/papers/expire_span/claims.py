r"""The claim of Expire-Span (arXiv:2105.06548).

`remember_key` (Sec. 5.1, the "Remember" task; Fig. 3): a key must be kept over a long corridor of noise and named
at the end. Expire-Span learns to give the key a long span and the noise short ones, so it needs far less memory
than the same model with the full Transformer-XL cache, at equal accuracy.
"""

from __future__ import annotations

import numpy as np
import torch

from ...engine.claims import ClaimResult, claim
from ...engine.train import evaluate
from .model import ExpireSpanTransformer
from .task import make_remember_key, remember_key_task


def build(cfg, task, expire: bool) -> ExpireSpanTransformer:
    return ExpireSpanTransformer(task.vocab_size, task.num_classes, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                                 dim_head=cfg.dim_head, block_size=cfg.block_size, max_len=cfg.length,
                                 max_span=cfg.max_span, ramp=cfg.ramp, alpha=cfg.alpha, expire=expire,
                                 span_init=cfg.span_init)


@torch.no_grad()
def memory_and_spans(model: ExpireSpanTransformer, ids: torch.Tensor, num_keys: int) -> dict:
    """Mean live memories per sequence and block (`memory_size`), and each layer's spans e_i (Eq. 3) on the test
    sequences: their mean over key and over noise positions, and the first 4 sequences' spans per position."""
    inputs = []
    hooks = [attn.register_forward_pre_hook(lambda mod, args: inputs.append((mod, args[0]))) for attn in model.layers()]
    model.eval()
    model(ids)
    for hook in hooks:
        hook.remove()
    is_key = (ids >= 1) & (ids <= num_keys)
    out = {"memory": model.memory_size(), "key_span": [], "noise_span": [], "examples": []}
    for attn in model.layers():
        h = torch.cat([x for mod, x in inputs if mod is attn], 1)            # (B, T, dim): the layer's memories
        e = attn.spans(h)                                                     # (B, T)
        out["key_span"].append(float(e[is_key].mean()))
        out["noise_span"].append(float(e[~is_key].mean()))
        out["examples"].append(e[:4].tolist())
    return out


def run_model(cfg, task, val, expire: bool, lr: float, seed: int, ctx) -> tuple[ExpireSpanTransformer, dict]:
    ctx.seed(seed)
    model = build(cfg, task, expire)
    fit = ctx.fit_and_eval(model, task, steps=cfg.steps, batch_size=cfg.batch_size, lr=lr, seed=seed,
                           eval_train=False)
    return model, {"accuracy": fit.accuracy, "val_accuracy": evaluate(model, val)["accuracy"]}


@claim(
    paper="expire_span",
    statement=("On a task that must keep one rare key over a long corridor of noise (Sec. 5.1), Expire-Span keeps "
               "far less memory than the same model with the full cache at equal accuracy, and its spans "
               "concentrate on the keys."),
    criterion=("mean over seeds: Expire-Span test accuracy >= full-cache accuracy - 5 points; Expire-Span's live "
               "memories per sequence (mean over blocks and layers) <= 0.5 x the full cache's; and in every seed "
               "the first layer's mean span of key tokens >= 2 x its mean span of noise tokens. Each model at its "
               "own learning rate (best validation accuracy of seed 0 over `lrs`)"),
    quick=dict(length=40, block_size=8, n_train=64, n_test=32, steps=4, batch_size=16, lrs=(3e-3,), seeds=1,
               dim=16, depth=2, heads=2, dim_head=8, max_span=256, ramp=8.0, alpha=0.03, span_init=-1.73),
    full=dict(length=128, block_size=32, n_train=4000, n_test=500, steps=600, batch_size=32, lrs=(3e-3, 5e-3),
              seeds=3, dim=32, depth=2, heads=2, dim_head=16, max_span=1024, ramp=8.0, alpha=0.03,
              span_init=-1.73),
)
def remember_key(cfg, ctx) -> ClaimResult:
    """Both models: the sweep on seed 0 picks a learning rate (validation set), then seeds 1.. at that rate."""
    val = torch.utils.data.TensorDataset(*make_remember_key(cfg.n_test, cfg.length, seed=10_000))
    metrics = {}
    for name, expire in (("expire_span", True), ("full_cache", False)):
        task = remember_key_task(cfg.length, cfg.n_train, cfg.n_test, seed=0)
        sweep = {lr: run_model(cfg, task, val, expire, lr, 0, ctx) for lr in cfg.lrs}
        lr = max(cfg.lrs, key=lambda r: sweep[r][1]["val_accuracy"])
        runs = [sweep[lr]] + [run_model(cfg, remember_key_task(cfg.length, cfg.n_train, cfg.n_test, seed=s), val,
                                        expire, lr, s, ctx) for s in range(1, cfg.seeds)]
        per_seed = [dict(fit, **memory_and_spans(model, task.test.tensors[0], task.num_classes))
                    for model, fit in runs]
        metrics[name] = {"lr": lr, "sweep_val_accuracy": {str(r): sweep[r][1]["val_accuracy"] for r in cfg.lrs},
                         "accuracy": [r["accuracy"] for r in per_seed], "memory": [r["memory"] for r in per_seed],
                         "key_span": [r["key_span"] for r in per_seed],
                         "noise_span": [r["noise_span"] for r in per_seed],
                         "mean_accuracy": float(np.mean([r["accuracy"] for r in per_seed])),
                         "mean_memory": float(np.mean([r["memory"] for r in per_seed]))}
        if expire:
            examples, positions = per_seed[0]["examples"], task.test.tensors[0][:4]
    ours, full = metrics["expire_span"], metrics["full_cache"]
    metrics["memory_ratio"] = ours["mean_memory"] / full["mean_memory"]
    metrics["key_over_noise_span"] = [k[0] / max(n[0], 1e-9) for k, n in zip(ours["key_span"], ours["noise_span"])]
    passed = (ours["mean_accuracy"] >= full["mean_accuracy"] - 5 and metrics["memory_ratio"] <= 0.5
              and min(metrics["key_over_noise_span"]) >= 2)
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_spans(examples, positions, metrics, cfg))


def plot_spans(examples, ids, metrics, cfg):
    """Left: the first layer's spans e_i over positions i of test sequences, the key marked, with the distance
    to the query (a memory must live that long to be seen). Right: memory vs accuracy per seed."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    t = np.arange(cfg.length)
    for b, spans in enumerate(examples[0]):
        line, = ax1.plot(t, spans, lw=1)
        key = int(np.nonzero((ids[b] >= 1).numpy() & (ids[b] <= 8).numpy())[0][0])
        ax1.plot(key, spans[key], "o", color=line.get_color())
    ax1.plot(t, cfg.length - 1 - t, "k--", lw=1, label="distance to the query")
    ax1.set(xlabel="position i", ylabel="span e_i (layer 1)", title="Predicted spans (o: the key)")
    ax1.legend()
    for name, marker in (("expire_span", "o"), ("full_cache", "s")):
        ax2.plot(metrics[name]["memory"], metrics[name]["accuracy"], marker, label=name.replace("_", " "))
    ax2.set(xlabel="live memories per sequence (mean over blocks, layers)", ylabel="test accuracy (%)",
            title=f"Memory vs accuracy (ratio {metrics['memory_ratio']:.2f})")
    ax2.legend()
    fig.tight_layout()
    return fig
