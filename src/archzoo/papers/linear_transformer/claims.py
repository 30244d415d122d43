r"""The claims of the linear transformer (arXiv:2006.16236).

1. `causal_equals_recurrent`: the causal parallel form (Eq. 8-12, what training runs) and the recurrent form
   (Eq. 18-20, what generation runs) compute the same function: a causally masked linear transformer is an RNN
   (Sec. 3.4). Both also equal the quadratic form with the causal mask and the same kernel (Eq. 4, 8).
2. `constant_time_generation`: generating token i costs the same at every i with linear attention (a state of
   fixed size), while softmax attention with a key-value cache attends over i keys and slows down as i grows;
   long generations are many times faster (Sec. 4.2, Tables 1-2: 317x more MNIST images/s, 4,462x CIFAR-10).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from ...core.sequence import SequenceTransformer
from ...engine.claims import ClaimResult, claim
from ...engine.runtime import num_threads
from .attention import LinearAttention
from .generation import IncrementalDecoder

# ----------------------------------------------------------------------------- claim 1: parallel = recurrent


def quadratic_causal_attention(attn: LinearAttention, x: Tensor) -> Tensor:
    r"""Eq. 4 with the causal mask of Eq. 8, written out: weights \phi(Q_i)^T \phi(K_j) for j <= i in an (N x N)
    matrix, normalized by their row sums. O(N^2); the definition the linear forms must reproduce."""
    q = attn.phi_q(rearrange(attn.to_q(x), "b n (h d) -> b h n d", h=attn.heads))
    k = attn.phi_k(rearrange(attn.to_k(x), "b n (h d) -> b h n d", h=attn.heads))
    v = rearrange(attn.to_v(x), "b n (h d) -> b h n d", h=attn.heads)
    weights = (q @ k.transpose(-2, -1)).tril()                            # (B, H, N, N)
    out = (weights @ v) / (weights.sum(-1, keepdim=True) + attn.eps)
    return attn.to_out(rearrange(out, "b h n e -> b n (h e)"))


def recurrent_attention(attn: LinearAttention, x: Tensor) -> Tensor:
    """The layer run as an RNN, one position after the other (Eq. 18-20): (B, N, dim) -> (B, N, dim)."""
    state, outs = None, []
    for t in range(x.shape[1]):
        y, state = attn.step(x[:, t], state)
        outs.append(y)
    return torch.stack(outs, 1)


def model_decoding_error(cfg, seed: int, n: int) -> float:
    """Max |logits| difference of a causal linear SequenceTransformer: parallel forward vs token-by-token decoding."""
    torch.manual_seed(seed)
    model = SequenceTransformer(cfg.vocab_size, cfg.vocab_size, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                                dim_head=cfg.dim_head, max_len=n, attention="linear_transformer",
                                attention_kwargs=dict(chunk_size=cfg.chunk_size), causal=True).double().eval()
    ids = torch.randint(0, cfg.vocab_size, (cfg.batch_size, n))
    with torch.no_grad():
        parallel = model(ids)                                             # (B, N, V)
        decoder = IncrementalDecoder(model, cfg.batch_size)
        steps = [decoder.prefill(ids[:, :1])] + [decoder.step(ids[:, t]) for t in range(1, n)]
    return float((torch.stack(steps, 1) - parallel).abs().max())


@claim(
    paper="linear_transformer",
    statement=("A causally masked linear transformer is an RNN (Sec. 3.4): the causal parallel form (Eq. 8-12) and "
               "the recurrent form (Eq. 18-20) give the same outputs, and both equal the quadratic causal form "
               "with the same kernel (Eq. 4 with the mask of Eq. 8)."),
    criterion=("float64, every length and seed: max |parallel - recurrent| <= 1e-10 and max |parallel - quadratic| "
               "<= 1e-10 for one attention layer, and max |parallel logits - token-by-token logits| <= 1e-10 for a "
               "whole causal SequenceTransformer"),
    quick=dict(lengths=(16, 40), batch_size=2, dim=32, heads=2, dim_head=8, depth=2, vocab_size=16, chunk_size=8,
               seeds=1),
    full=dict(lengths=(64, 512, 2048), batch_size=2, dim=128, heads=4, dim_head=32, depth=2, vocab_size=256,
              chunk_size=64, seeds=3),
)
def causal_equals_recurrent(cfg, ctx) -> ClaimResult:
    errors = {kind: {n: [] for n in cfg.lengths} for kind in ("recurrent", "quadratic", "model", "recurrent_fp32")}
    per_position = None
    for seed, n in ctx.grid(cfg.seeds, cfg.lengths):
        torch.manual_seed(seed)
        attn = LinearAttention(cfg.dim, cfg.heads, cfg.dim_head, chunk_size=cfg.chunk_size).double()
        x = torch.randn(cfg.batch_size, n, cfg.dim, dtype=torch.float64)
        with torch.no_grad():
            parallel = attn(x, causal=True)
            recurrent = recurrent_attention(attn, x)
            quadratic = quadratic_causal_attention(attn, x)
            attn32, x32 = attn.float(), x.float()
            fp32 = float((attn32(x32, causal=True) - recurrent_attention(attn32, x32)).abs().max())
        gap = (parallel - recurrent).abs()
        errors["recurrent"][n].append(float(gap.max()))
        errors["quadratic"][n].append(float((parallel - quadratic).abs().max()))
        errors["recurrent_fp32"][n].append(fp32)
        errors["model"][n].append(model_decoding_error(cfg, seed, n))
        if seed == 0 and n == max(cfg.lengths):
            per_position = gap.amax(dim=(0, 2)).tolist()                   # (N,) worst over batch and features
    worst = {kind: max(max(v) for v in per_n.values()) for kind, per_n in errors.items()}
    passed = worst["recurrent"] <= 1e-10 and worst["quadratic"] <= 1e-10 and worst["model"] <= 1e-10
    metrics = {"max_error": worst, "max_error_per_length": {k: {n: max(v) for n, v in per_n.items()}
                                                            for k, per_n in errors.items()},
               "errors_per_seed": errors, "error_per_position_longest": per_position}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_equivalence(errors, per_position),
                       notes="float64 unless marked fp32 (the fp32 gap is reported, not part of the criterion)")


def plot_equivalence(errors: dict, per_position: list[float]):
    """Left: |parallel - recurrent| at every position of the longest sequence. Right: max error per length."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.semilogy(np.arange(1, len(per_position) + 1), np.maximum(per_position, 1e-18), lw=0.8)
    ax1.axhline(1e-10, color="tab:red", ls="--", label="criterion 1e-10")
    ax1.set(xlabel="position i", ylabel="max |parallel - recurrent|", title="one layer, float64, seed 0")
    ax1.legend()
    labels = {"recurrent": "parallel vs recurrent (layer)", "quadratic": "parallel vs quadratic (layer)",
              "model": "parallel vs token-by-token (model)", "recurrent_fp32": "parallel vs recurrent, float32"}
    lengths = list(errors["recurrent"])
    width = 0.8 / len(labels)
    for i, (kind, label) in enumerate(labels.items()):
        values = [max(max(errors[kind][n]), 1e-18) for n in lengths]
        ax2.bar(np.arange(len(lengths)) + (i - 1.5) * width, values, width, label=label)
    ax2.axhline(1e-10, color="tab:red", ls="--")
    ax2.set(yscale="log", xticks=range(len(lengths)), xticklabels=[str(n) for n in lengths], xlabel="length N",
            ylabel="max abs error over seeds", title="the same function, computed three ways")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 2: constant-time generation


def time_generation(model: SequenceTransformer, batch_size: int, length: int) -> dict:
    """Greedy generation of `length` tokens from a start token, timing every step (one token for the batch).

    Runs on one intra-op thread, so that the CPU time of this thread (`time.thread_time`) is all the work done;
    other processes on a shared machine do not inflate it as they inflate the wall time, recorded beside it.
    Returns per-step times (ms) for positions 1..length-1, the totals (s) and the bytes of the decoding state
    at the start and at the end.
    """
    decoder = IncrementalDecoder(model, batch_size, length)
    cpu, wall = [], []
    with num_threads(1), torch.no_grad():
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        logits = decoder.prefill(torch.zeros(batch_size, 1, dtype=torch.long))
        first_state = decoder.state_bytes()
        for _ in range(1, length):
            c0, w0 = time.thread_time(), time.perf_counter()
            logits = decoder.step(logits.argmax(-1))
            cpu.append((time.thread_time() - c0) * 1e3)
            wall.append((time.perf_counter() - w0) * 1e3)
        total_cpu, total_wall = time.thread_time() - start_cpu, time.perf_counter() - start_wall
    return {"cpu_ms": cpu, "wall_ms": wall, "total_cpu_s": total_cpu, "total_wall_s": total_wall,
            "state_bytes": (first_state, decoder.state_bytes())}


def windowed_median(values: list[float], window: int) -> tuple[list[int], list[float]]:
    """Medians over consecutive windows of steps; step k (0-based) generates position k + 1."""
    starts = range(0, len(values) - window + 1, window)
    return [s + window for s in starts], [float(np.median(values[s:s + window])) for s in starts]


METHODS = {"linear": "linear_transformer", "softmax_kv_cache": "full"}


@claim(
    paper="linear_transformer",
    statement=("Generation with linear attention costs the same per token at every position (a state of fixed "
               "size, Sec. 3.4), while softmax attention with a key-value cache slows down as the position grows; "
               "long generations are many times faster (Sec. 4.2, Tables 1-2: 317x more images/s on MNIST, "
               "4,462x on CIFAR-10)."),
    criterion=("per-token CPU time (median over the first window after the warm-up window and over the last "
               "window, median over seeds): linear last/first <= 1.5, softmax+KV-cache last/first >= 3, and "
               "total time to generate the whole sequence, softmax+KV-cache / linear >= 3"),
    quick=dict(length=96, batch_size=2, dim=32, heads=2, dim_head=16, depth=2, vocab_size=256, window=16, seeds=1),
    full=dict(length=3072, batch_size=32, dim=128, heads=8, dim_head=16, depth=2, vocab_size=256, window=32,
              seeds=3),
)
def constant_time_generation(cfg, ctx) -> ClaimResult:
    runs = {m: [] for m in METHODS}
    for seed, method in ctx.grid(cfg.seeds, METHODS):
        torch.manual_seed(seed)                      # the same weights for both: only the attention differs
        model = SequenceTransformer(cfg.vocab_size, cfg.vocab_size, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                                    dim_head=cfg.dim_head, max_len=cfg.length, attention=METHODS[method],
                                    causal=True).eval()
        runs[method].append(time_generation(model, cfg.batch_size, cfg.length))

    per_token, curves, totals, wall_totals, states = {}, {}, {}, {}, {}
    for method, rs in runs.items():
        windows = [windowed_median(r["cpu_ms"], cfg.window) for r in rs]
        positions = windows[0][0]
        curve = np.median([w[1] for w in windows], axis=0)          # median over seeds, per window
        curves[method] = {"position": positions, "cpu_ms": curve.tolist(),
                          "wall_ms": np.median([windowed_median(r["wall_ms"], cfg.window)[1] for r in rs],
                                               axis=0).tolist()}
        per_token[method] = {"first_ms": float(curve[1]), "first_position": positions[1],
                             "last_ms": float(curve[-1]), "last_position": positions[-1],
                             "last_over_first": float(curve[-1] / curve[1]),
                             "per_seed_last_over_first": [w[1][-1] / w[1][1] for w in windows]}
        totals[method] = [r["total_cpu_s"] for r in rs]
        wall_totals[method] = [r["total_wall_s"] for r in rs]
        states[method] = {"first_bytes": rs[0]["state_bytes"][0], "last_bytes": rs[0]["state_bytes"][1]}
    speedup = [s / li for s, li in zip(totals["softmax_kv_cache"], totals["linear"])]
    last_speedup = per_token["softmax_kv_cache"]["last_ms"] / per_token["linear"]["last_ms"]
    passed = (per_token["linear"]["last_over_first"] <= 1.5
              and per_token["softmax_kv_cache"]["last_over_first"] >= 3
              and float(np.median(speedup)) >= 3)
    metrics = {"per_token": per_token, "total_cpu_s": totals, "total_wall_s": wall_totals,
               "total_speedup": float(np.median(speedup)), "total_speedup_per_seed": speedup,
               "per_token_speedup_at_last_position": last_speedup, "decoding_state": states, "curves": curves}
    return ClaimResult(metrics=metrics, passed=passed, figure=plot_generation(curves, totals, cfg),
                       notes=f"batch {cfg.batch_size}, {cfg.length} tokens from one start token, untrained models "
                             f"with the same weights (dim {cfg.dim}, depth {cfg.depth}, {cfg.heads} heads of "
                             f"{cfg.dim_head}); first window skipped as warm-up; one thread")


def plot_generation(curves: dict, totals: dict, cfg):
    """Left: per-token time against position. Right: time to generate the first i tokens (cf. Tables 1-2)."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = {"linear": "linear attention (state S, z)", "softmax_kv_cache": "softmax + key-value cache"}
    for method, c in curves.items():
        ax1.plot(c["position"], c["cpu_ms"], marker=".", label=names[method])
        ax2.plot(c["position"], np.cumsum(c["cpu_ms"]) * cfg.window / 1e3,
                 label=f"{names[method]}: {np.median(totals[method]):.1f} s in all")
    ax1.set(xlabel="position i", ylabel=f"ms per token (CPU, batch {cfg.batch_size})",
            title="cost of generating token i", ylim=(0, None))
    ax2.set(xlabel="tokens generated", ylabel="seconds (CPU)", title="time to generate a sequence")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
