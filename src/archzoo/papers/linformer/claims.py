"""The claims of Linformer (Wang et al. 2020, arXiv:2006.04768).

1. `low_rank_attention`: the context mapping matrix P of a pretrained (masked-language-model) Transformer is low
   rank: most of its spectrum lies in the first k singular values (Sec. 3, Fig. 1).
2. `linear_cost`: at fixed k, Linformer's time and memory grow linearly in n (Sec. 4, Table 3).
3. `accuracy_near_full`: with k at least the rank of the attention a task needs, Linformer reaches the accuracy
   of full attention, and below it does not (Sec. 3, Theorem 1; Fig. 3), on the copy task.

Claim 1 pretrains small masked language models (RoBERTa's objective, the paper's Sec. 5.1) on characters of
CPython's documentation; claim 2 times the attention layer alone; claim 3 trains on a generated copy task.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ...core.attention import FullAttention
from ...core.sequence import SequenceTransformer
from ...engine.bench import bench_module, compare_attentions, method_slopes, plot_comparison, plot_cost_panels
from ...engine.claims import ClaimResult, claim
from .attention import LinformerAttention
from .spectrum import attention_entropy, context_mapping_matrices, normalized_cumulative_singular_values, shuffle_rows

MASK_PROB = 0.15                                  # RoBERTa / BERT: 15% of the tokens are predicted


# ----------------------------------------------------------------------------- masked language modelling


def _windows(ids: torch.Tensor, length: int, stride: int) -> torch.Tensor:
    starts = torch.arange(0, len(ids) - length + 1, stride)
    return ids[starts[:, None] + torch.arange(length)]                      # (num_windows, length)


def mask_tokens(x: torch.Tensor, mask_id: int, vocab: int, generator: torch.Generator | None = None):
    """BERT/RoBERTa masking: each token is predicted with probability 0.15; a predicted token is replaced by the
    mask token 80% of the time, by a random token 10%, and kept 10%. Returns (input, target) with target -100 at
    tokens that are not predicted."""
    predict = torch.rand(x.shape, generator=generator) < MASK_PROB
    r = torch.rand(x.shape, generator=generator)
    inputs = torch.where(predict & (r < 0.8), mask_id, x)
    random_tokens = torch.randint(vocab, x.shape, generator=generator)
    inputs = torch.where(predict & (r >= 0.8) & (r < 0.9), random_tokens, inputs)
    return inputs, torch.where(predict, x, -100)


def masked_lm_data(ctx, length: int, n_test: int) -> SimpleNamespace:
    """Character windows of CPython's documentation (`pydoc`): `train` holds raw windows (masked afresh at every
    step, RoBERTa's dynamic masking), `test` a fixed masking of `n_test` held-out windows, `raw_test` those windows
    unmasked. The vocabulary is the characters plus one mask token; `majority_accuracy` is the test accuracy of
    always predicting the commonest character (what a model that ignores the context gets at best)."""
    text = ctx.dataset("pydoc")
    vocab = text.tokenizer.vocab_size
    raw_test = _windows(text.val, length, length)[:n_test]
    test = TensorDataset(*mask_tokens(raw_test, vocab, vocab, torch.Generator().manual_seed(1234)))
    target = test.tensors[1][test.tensors[1] != -100]
    majority = 100.0 * float(torch.bincount(target).max()) / len(target)   # always predict the commonest character
    return SimpleNamespace(train=TensorDataset(_windows(text.train, length, length // 2)), test=test,
                           raw_test=raw_test, vocab=vocab, mask_id=vocab, majority_accuracy=majority)


def mlm_model(data, length: int, attention: str = "full", attention_kwargs: dict | None = None,
              positional: str = "learned"):
    """The claims' masked language model: `archzoo bench tasks`' SequenceTransformer (width 64, 2 pre-norm layers,
    4 heads of 16, `positional` positions) over characters + the mask token, predicting characters."""
    return SequenceTransformer(data.vocab + 1, data.vocab, dim=64, depth=2, heads=4, dim_head=16, max_len=length,
                               attention=attention, attention_kwargs=attention_kwargs, per_token=True,
                               positional=positional)


def train_mlm(ctx, model, data, cfg, seed: int):
    """Pretrain with dynamic masking; returns the engine's FitResult (test accuracy on masked characters)."""

    def loss_fn(net, batch):
        inputs, target = mask_tokens(batch[0], data.mask_id, data.vocab)
        return F.cross_entropy(net(inputs).flatten(0, 1), target.flatten())

    return ctx.fit_and_eval(model, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                            warmup_steps=cfg.steps // 10, seed=seed, loss_fn=loss_fn, eval_train=False)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- claim 1: P is low rank


@claim(
    paper="linformer",
    statement="The context mapping matrix P = softmax(QK^T/sqrt(d)) of a pretrained Transformer is low rank: in "
              "the heads that have learned to select, its normalised cumulative singular value reaches most of the "
              "spectrum within the first k = n/4 singular values (Sec. 3, Fig. 1: n = 512, k = 128, RoBERTa), "
              "because of structure shared between its rows, not because of how sharp each row is.",
    criterion="masked-LM Transformer with full attention and sinusoidal positions pretrained at n = 256 (2 seeds "
              "of 3000 steps), P on 32 held-out sequences: (1) the model uses context: masked-character accuracy "
              ">= the commonest character + 10 points; (2) every seed has >= 2 of its 8 heads that learned (mean "
              "row entropy of P <= 0.8 log n; uniform attention: 1); (3) over those heads, the normalised cumulative "
              "singular value at k = n/4 = 64 is >= 0.9; (4) there it exceeds the same P with each row shuffled "
              "(same weights per query, no shared structure) by >= 0.2, and so it does at the small k = n/16 = 16",
    quick=dict(length=64, steps=4, batch_size=8, lr=3e-3, n_test=8, n_analyse=4, seeds=1),
    full=dict(length=256, steps=3000, batch_size=8, lr=3e-3, n_test=256, n_analyse=32, seeds=2),
)
def low_rank_attention(cfg, ctx) -> ClaimResult:
    data = masked_lm_data(ctx, cfg.length, cfg.n_test)
    ks = {"n/4": cfg.length // 4, "n/16": cfg.length // 16}
    sequences = data.raw_test[:cfg.n_analyse]                               # unmasked text, as at inference
    curves = {"trained": [], "init": []}                                    # per seed: (L, H, n)
    heads = {"trained": [], "init": []}                                     # per seed: per-head statistics
    accuracy = []
    for seed in range(cfg.seeds):
        ctx.seed(seed)
        model = mlm_model(data, cfg.length, positional="sinusoidal")
        for stage in ("init", "trained"):
            if stage == "trained":
                accuracy.append(train_mlm(ctx, model, data, cfg, seed).accuracy)
            P = context_mapping_matrices(model, sequences)                  # (L, B, H, n, n)
            curve = normalized_cumulative_singular_values(P).mean(1)       # (L, H, n)
            shuffled = normalized_cumulative_singular_values(
                shuffle_rows(P, torch.Generator().manual_seed(seed))).mean(1)
            curves[stage].append(curve)
            heads[stage].append({"entropy": attention_entropy(P).mean(1).tolist(),        # (L, H)
                                 **{f"at_{name}": curve[..., k - 1].tolist() for name, k in ks.items()},
                                 **{f"shuffled_at_{name}": shuffled[..., k - 1].tolist() for name, k in ks.items()}})
    learned = {stage: [np.array(h["entropy"]) <= 0.8 for h in runs] for stage, runs in heads.items()}

    def over_learned(stage: str, key: str):                                # mean over learned heads of all seeds
        values = [v for h, m in zip(heads[stage], learned[stage]) for v in np.array(h[key])[m]]
        return float(np.mean(values)) if values else None

    summary = {stage: {"learned_heads_per_seed": [int(m.sum()) for m in learned[stage]],
                       **{key: over_learned(stage, key) for key in heads[stage][0] if key != "entropy"}}
               for stage in heads}
    t = summary["trained"]
    majority, mean_acc = data.majority_accuracy, float(np.mean(accuracy))
    checks = {"uses context": mean_acc >= majority + 10.0,
              ">= 2 learned heads per seed": min(t["learned_heads_per_seed"]) >= 2}
    checks["low rank at n/4"] = checks[">= 2 learned heads per seed"] and t["at_n/4"] >= 0.9
    checks["beats shuffled rows"] = checks[">= 2 learned heads per seed"] and all(
        t[f"at_{name}"] - t[f"shuffled_at_{name}"] >= 0.2 for name in ks)
    trained, init = torch.stack(curves["trained"]).mean(0), torch.stack(curves["init"]).mean(0)   # (L, H, n)
    metrics = {"n": cfg.length, "k": ks, "checks": checks, "learned_heads": summary, "per_head": heads,
               "masked_char_accuracy_per_seed": accuracy, "masked_char_accuracy": mean_acc,
               "majority_char_accuracy": majority, "mean_curve": trained.mean((0, 1)).tolist(),
               "init_mean_curve": init.mean((0, 1)).tolist()}
    learned_mean = np.mean(learned["trained"], axis=0)                    # (L, H) share of seeds a head learned in
    return ClaimResult(metrics=metrics, passed=all(checks.values()),
                       figure=_plot_spectrum(trained, init, ks["n/4"], learned_mean > 0),
                       notes="learned head: mean row entropy of P <= 0.8 log n; shuffled: each row of P permuted")


def _plot_spectrum(trained: torch.Tensor, init: torch.Tensor, k: int, learned: np.ndarray):
    """Fig. 1 redrawn: the normalised cumulative singular value against its index (left) and its value at k for
    every layer and head (right; * marks the heads that learned to select, `learned` (L, H))."""
    plt = _plt()
    L, H, n = trained.shape
    fig, (ax, hm) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw=dict(width_ratios=[1.5, 1]))
    index = np.arange(1, n + 1)
    for layer in range(L):
        ax.plot(index, trained[layer].mean(0), lw=1.5, label=f"layer {layer + 1} (pretrained)")
    ax.plot(index, init.mean((0, 1)), "k--", lw=1, label="at initialization")
    ax.plot(index, index / n, ":", color="gray", lw=1, label="full rank, flat spectrum")
    ax.axvline(k, color="gray", lw=0.8)
    ax.set(xlabel="singular value index", ylabel="normalised cumulative singular value", ylim=(0, 1.01),
           title=f"P of a masked character LM, n = {n} (mean over heads and sequences)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    im = hm.imshow(trained[..., k - 1].numpy(), cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(trained[..., k - 1].numpy()):
        hm.text(j, i, f"{v:.2f}{'*' if learned[i, j] else ''}", ha="center", va="center", color="w", fontsize=9)
    hm.set(xlabel="head", ylabel="layer", xticks=range(H), xticklabels=range(1, H + 1), yticks=range(L),
           yticklabels=range(1, L + 1), title=f"value at index k = {k} (* learned head)")
    fig.colorbar(im, ax=hm)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 2: linear cost


class _SelfAttention(torch.nn.Module):
    def __init__(self, attn: torch.nn.Module):
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


@claim(
    paper="linformer",
    statement="At fixed k, Linformer attention's time and memory grow linearly with the sequence length n, while "
              "standard attention's time grows quadratically (Sec. 4, Table 3).",
    criterion="forward+backward of one attention layer (batch 1, width 256, 4 heads of 64): for each k in "
              "{128, 256}, the log-log slopes of median time and of peak memory against n, for n from 1024 to "
              "16384, are both <= 1.15",
    quick=dict(dim=64, heads=2, dim_head=32, ks=(16,), sizes=(64, 128, 256), full_max=256, repeats=1, warmup=0,
               min_size=64, seeds=1),
    full=dict(dim=256, heads=4, dim_head=64, ks=(128, 256), sizes=(512, 1024, 2048, 4096, 8192, 16384),
              full_max=8192, repeats=5, warmup=1, min_size=1024, seeds=1),
)
def linear_cost(cfg, ctx) -> ClaimResult:
    rows = []
    for k in cfg.ks:
        rows += bench_module(
            lambda n, k=k: _SelfAttention(LinformerAttention(cfg.dim, cfg.heads, cfg.dim_head, seq_len=n, k=k)),
            lambda n: (torch.randn(1, n, cfg.dim, requires_grad=True),), cfg.sizes, device=ctx.device,
            repeats=cfg.repeats, warmup=cfg.warmup, name=f"linformer k={k}")
    rows += bench_module(lambda n: _SelfAttention(FullAttention(cfg.dim, cfg.heads, cfg.dim_head)),
                         lambda n: (torch.randn(1, n, cfg.dim, requires_grad=True),),
                         [n for n in cfg.sizes if n <= cfg.full_max], device=ctx.device,
                         repeats=max(1, cfg.repeats // 2), warmup=cfg.warmup, name="full (SDPA)")
    slopes = method_slopes(rows, min_size=cfg.min_size)
    ours = [f"linformer k={k}" for k in cfg.ks]
    passed = all(slopes[m]["time_ms"] <= 1.15 and slopes[m]["peak_mb"] <= 1.15 for m in ours)
    metrics = {"slopes": slopes, "rows": rows,
               "max_linformer_slope": max(max(slopes[m].values()) for m in ours)}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_cost_panels(
        rows, slopes, xlabel="sequence length n", title="Linformer vs full attention: cost against n"))


# ----------------------------------------------------------------------------- claim 3: accuracy near full


@claim(
    paper="linformer",
    statement="A Linformer whose projected dimension k is at least the rank of the attention map a task needs is as "
              "accurate as the same Transformer with full attention, and one with a k below it is not (Sec. 3, "
              "Theorem 1: attention is approximated at rank k; Fig. 3a: k = 128 and 256 for n = 512 near "
              "RoBERTa). Copy moves each of the m = (n - 1) // 2 symbols by a fixed offset, a map of rank m ~ n/2.",
    criterion="copy, n = 64 (m = 31 symbols of 10), same model (dim 64, 2 layers, 4 heads of 16), data, 300 steps "
              "and 3 seeds; each model at its own lr, the best of {1e-3, 3e-3, 1e-2} on 500 validation sequences "
              "(seed 0); mean test accuracy over the copied symbols: (1) full attention >= 90 (the task is "
              "learned); (2) Linformer k = n/2 = 32 (headwise sharing) >= full - 3 points; (3) the control "
              "Linformer k = n/8 = 8, below the rank the task needs, <= full - 20 points",
    quick=dict(task="copy", length=16, n_train=64, n_val=32, n_test=32, steps=4, batch_size=8, lrs=(3e-3,), seeds=1),
    full=dict(task="copy", length=64, n_train=4000, n_val=500, n_test=500, steps=300, batch_size=32,
              lrs=(1e-3, 3e-3, 1e-2), seeds=3),
)
def accuracy_near_full(cfg, ctx) -> ClaimResult:
    ks = {"n/2": cfg.length // 2, "n/8": cfg.length // 8}
    variants = {"full": ("full", None),
                **{f"linformer k={k}": ("linformer", dict(seq_len=cfg.length, k=k)) for k in ks.values()}}
    result = compare_attentions(ctx, cfg, variants)
    acc = result["accuracy"]
    full, matched, small = acc["full"], acc[f"linformer k={ks['n/2']}"], acc[f"linformer k={ks['n/8']}"]
    checks = {"full learns the task": full >= 90.0, "k = n/2 within 3 points of full": matched >= full - 3.0,
              "k = n/8 >= 20 points below full": small <= full - 20.0}
    metrics = {"n": cfg.length, "k": ks, "checks": checks, "full_minus_linformer_points": full - matched, **result}
    return ClaimResult(metrics=metrics, passed=all(checks.values()),
                       figure=plot_comparison(result, f"copy, n = {cfg.length}: Linformer at two k, full attention"),
                       notes=f"lr per model from lr_sweep_val_accuracy ({cfg.n_val} validation sequences, seed 0); "
                             "accuracy over the copied symbols")
