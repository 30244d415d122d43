"""The claims of BigBird (Zaheer et al. 2020, arXiv:2007.14062).

1. `linear_memory`: the block-sparse attention's memory grows linearly in the sequence length (Sec. 1-2, App. D).
2. `graph_diameter`: through a real layer stack, random + window + global attention connects every output to every
   input in two layers, where a sliding window alone needs as many layers as blocks (Sec. 2, the graph-theoretic
   argument behind Theorems 1-2), measured by the Jacobian.
3. `task_accuracy`: on a generated task that needs far information (copy) the sparse attention is about as
   accurate as full attention (Sec. 4; the Long Range Arena comparison of Tay et al. 2021), where a sliding
   window alone is not.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import reduce, repeat
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...core import FullAttention, Transformer
from ...engine.bench import bench_module, compare_attentions, method_slopes, plot_comparison, plot_cost_panels
from ...engine.claims import ClaimResult, claim
from .attention import BigBirdAttention
from .bench import bench_kwargs
from .graph import PatternAttention, dependency_norms, predicted_reach

# ----------------------------------------------------------------------------- claim 1: linear memory


class _Self(nn.Module):
    """`attn(x)` as self-attention; with `math=True` inside SDPA's math kernel, which forms the n x n scores."""

    def __init__(self, attn: nn.Module, math: bool = False):
        super().__init__()
        self.attn, self.math = attn, math

    def forward(self, x: Tensor) -> Tensor:
        if self.math:
            with sdpa_kernel(SDPBackend.MATH):
                return self.attn(x)
        return self.attn(x)


@claim(
    paper="bigbird",
    statement=("BigBird reduces the quadratic memory of full attention to linear in the sequence length n "
               "(Sec. 1-2, App. D): forward+backward peak memory of one attention layer (dim 512, 8 heads of 64, "
               "blocks of 64, w = 3, g = 2, r = 3 blocks) grows like n."),
    criterion="log-log least-squares slope of BigBird's peak memory against n, from n = 1024 up, <= 1.15",
    quick=dict(sizes=(256, 512), dense_sizes=(256,), slope_from=256, dim=64, heads=2, dim_head=32, repeats=1,
               warmup=0, seeds=1),
    full=dict(sizes=(1024, 2048, 4096, 8192, 16384), dense_sizes=(1024, 2048, 4096), slope_from=1024, dim=512,
              heads=8, dim_head=64, repeats=3, warmup=1, seeds=1),
)
def linear_memory(cfg, ctx) -> ClaimResult:
    def inputs(n):
        return (torch.randn(1, n, cfg.dim, requires_grad=True),)

    def bigbird(n):
        return _Self(BigBirdAttention(cfg.dim, cfg.heads, cfg.dim_head, **bench_kwargs(n)))

    def full(math):
        return lambda n: _Self(FullAttention(cfg.dim, cfg.heads, cfg.dim_head), math=math)

    kw = dict(device=ctx.device, repeats=cfg.repeats, warmup=cfg.warmup)
    methods = {"BigBird": bench_module(bigbird, inputs, cfg.sizes, name="BigBird", **kw),
               "full (n x n scores)": bench_module(full(True), inputs, cfg.dense_sizes, name="full (n x n scores)",
                                                   **kw),
               "full (SDPA flash kernel)": bench_module(full(False), inputs, cfg.dense_sizes,
                                                        name="full (SDPA flash kernel)", **kw)}
    curves = {m: {"n": [r["size"] for r in rows if "peak_mb" in r],
                  "peak_mb": [r["peak_mb"] for r in rows if "peak_mb" in r],
                  "time_ms": [r["time_ms"] for r in rows if "time_ms" in r]} for m, rows in methods.items()}
    rows = [r for rs in methods.values() for r in rs]
    fitted = method_slopes(rows, min_size=cfg.slope_from, missing_ok=True)    # None: fewer than two sizes
    slopes = {m: {"memory": s["peak_mb"], "time": s["time_ms"]} for m, s in fitted.items() if None not in s.values()}
    errors = {m: {r["size"]: r["error"] for r in rows if "error" in r} for m, rows in methods.items()}
    passed = "BigBird" in slopes and slopes["BigBird"]["memory"] <= 1.15
    return ClaimResult(metrics={"slopes": slopes, "curves": curves, "errors": errors}, passed=passed,
                       figure=plot_cost_panels(rows, fitted, xlabel="sequence length n", title=(
                           "One attention layer, forward+backward (batch 1): BigBird against full attention")),
                       notes=f"batch 1, dim {cfg.dim}, {cfg.heads} heads of {cfg.dim_head}; memory: peak live tensor "
                             f"bytes of one forward+backward beyond inputs and weights; time: median of {cfg.repeats}")


# ----------------------------------------------------------------------------- claim 2: graph diameter


@claim(
    paper="bigbird",
    statement=("Sec. 2: attention is a graph on the tokens and information crosses one edge per layer, so with a "
               "sliding window alone (W) the two ends of a sequence of nb blocks are connected only after nb - 1 "
               "layers, r random blocks per query (R + W) connect every pair in a few layers, and the global blocks "
               "of BigBird (R + W + G) in two: in a real BigBird layer stack every output depends on every input "
               "after 2 layers, at every n, where a window-only stack still sees only 5 blocks."),
    criterion=("n = 128 ... 1024 tokens (16 ... 128 blocks of 8), randomly initialised pre-norm Transformer stacks "
               "(dim 32, 2 heads of 16, 5 layers), 2 seeds; output t depends on input s after L layers when the "
               "Jacobian block d y_L[t] / d x[s] is nonzero (one output token per block): (1) at every n, seed and "
               "depth the measured dependencies equal those that the layers' attention graphs predict, for all "
               "three stacks; (2) BigBird (the real block-sparse attention): every output depends on every input "
               "after 2 layers at every n; (3) window-only control: after 2 layers at most 5 / nb of the pairs "
               "and after 5 layers the first output still does not depend on the last input, at every n; "
               "(4) R + W: >= 90% of the pairs after 3 layers at every n"),
    quick=dict(num_blocks=(8, 16), block_size=4, depth=3, dim=16, heads=2, dim_head=8, seeds=1),
    full=dict(num_blocks=(16, 32, 64, 128), block_size=8, depth=5, dim=32, heads=2, dim_head=16, seeds=2),
)
def graph_diameter(cfg, ctx) -> ClaimResult:
    stacks = {"W": (PatternAttention, dict(pattern="W")), "R+W": (PatternAttention, dict(pattern="R+W")),
              "BigBird": (BigBirdAttention, {}), "full": (FullAttention, None)}
    fraction = {p: {nb: [] for nb in cfg.num_blocks} for p in stacks}       # per seed: reached pairs per depth
    matches = {p: {nb: [] for nb in cfg.num_blocks} for p in stacks if p != "full"}
    first_last = {p: {nb: [] for nb in cfg.num_blocks} for p in stacks}     # y_L[first] depends on x[last]
    far_near = {p: {nb: [] for nb in cfg.num_blocks} for p in stacks}       # Jacobian size, far / same block
    for seed, pattern, nb in ctx.grid(cfg.seeds, stacks, cfg.num_blocks):
        ctx.seed(seed)
        attention, kw = stacks[pattern]
        kw = None if kw is None else dict(block_size=cfg.block_size, **kw)
        model = Transformer(cfg.dim, cfg.depth, cfg.heads, cfg.dim_head, attention=attention, attention_kwargs=kw)
        n = nb * cfg.block_size
        rows = torch.arange(nb) * cfg.block_size + cfg.block_size // 2     # one output token per block
        g = torch.Generator().manual_seed(seed)
        norms = dependency_norms(model.blocks, torch.randn(1, n, cfg.dim, generator=g), rows, generator=g)
        measured = norms > 0                                                  # (L, nb, N)
        fraction[pattern][nb].append(measured.float().mean((1, 2)).tolist())
        first_last[pattern][nb].append(bool(measured[-1, 0, -1]))
        per_block = reduce(norms[1], "t (j s) -> t j", "max", s=cfg.block_size)   # depth 2, (nb out, nb in)
        gap = (torch.arange(nb)[:, None] - torch.arange(nb)[None]).abs()
        far_near[pattern][nb].append(float(per_block[gap > 2].median() / per_block[gap == 0].median()))
        if pattern != "full":
            reach = predicted_reach([block.attn.block_adjacency(nb) for block in model.blocks])  # (L, nb, nb)
            matches[pattern][nb].append(bool((measured == repeat(reach, "l i j -> l i (j s)", s=cfg.block_size)).all()))
    mean = {p: {nb: np.mean(f[nb], axis=0).tolist() for nb in cfg.num_blocks} for p, f in fraction.items()}
    connected = {p: {nb: [next((d + 1 for d, x in enumerate(run) if x == 1.0), None) for run in f[nb]]
                     for nb in cfg.num_blocks} for p, f in fraction.items()}
    checks = {"layers realize their graphs": all(all(v) for m in matches.values() for v in m.values()),
              "BigBird connects all after 2 layers": all(min(f[1] for f in fraction["BigBird"][nb]) == 1.0
                                                         for nb in cfg.num_blocks),
              "window-only sees <= 5 blocks after 2 layers": all(max(f[1] for f in fraction["W"][nb]) <= 5 / nb
                                                                 for nb in cfg.num_blocks),
              "window-only leaves the ends apart": not any(any(v) for v in first_last["W"].values()),
              "R+W >= 90% after 3 layers": all(min(f[min(2, cfg.depth - 1)] for f in fraction["R+W"][nb]) >= 0.9
                                              for nb in cfg.num_blocks)}
    metrics = {"tokens": {nb: nb * cfg.block_size for nb in cfg.num_blocks}, "checks": checks,
               "reached_fraction": mean, "layers_to_connect_all": connected, "first_output_sees_last_input":
               first_last, "graph_matches": matches, "far_over_near_at_depth_2": far_near,
               "reached_fraction_per_seed": fraction}
    return ClaimResult(metrics=metrics, passed=all(checks.values()), figure=plot_reach(mean, cfg),
                       notes="dependency = nonzero vector-Jacobian product of y_L[t] with a random vector, w.r.t. "
                             "x[s]; W and R + W are BigBird's attention under those graphs (PatternAttention); full "
                             "attention for reference (far_over_near: median Jacobian size of pairs > 2 blocks apart "
                             "over same-block pairs)")


def plot_reach(mean: dict, cfg):
    """Fraction of (output, input) pairs that depend on each other against depth, one panel per n."""
    import matplotlib.pyplot as plt

    sizes = cfg.num_blocks
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 3.4), sharey=True)
    labels = {"W": "window only (W)", "R+W": "random + window", "BigBird": "BigBird (R + W + G)",
              "full": "full attention"}
    depths = np.arange(1, cfg.depth + 1)
    for ax, nb in zip(np.atleast_1d(axes), sizes):
        for pattern, m in mean.items():
            ax.plot(depths, m[nb], marker="o", label=labels[pattern], linestyle="--" if pattern == "full" else "-")
        ax.set(xlabel="layers L", title=f"n = {nb * cfg.block_size} ({nb} blocks)", xticks=depths)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("pairs (t, s) with dy_L[t]/dx[s] != 0")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle("Which inputs each output depends on, through a randomly initialised layer stack (Jacobian)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- claim 3: task accuracy


@claim(
    paper="bigbird",
    statement=("BigBird's sparse attention (window + global + random) is about as accurate as full attention (Sec. 4; "
               "Long Range Arena, Tay et al. 2021, Table 1), and its global and random blocks are what make it so: "
               "on a task that needs information from far away, the same Transformer with a sliding window alone "
               "fails (Sec. 2-3, the role of the global tokens)."),
    criterion=("copy, n = 64 (31 symbols of 10, each copied 32 tokens away), blocks of 2 tokens (32 blocks; BigBird "
               "w = 3, g = 2, r = 3 blocks: a query sees 16 of 64 keys), same model (dim 64, 2 layers, 4 heads of "
               "16), data, 300 steps and 3 seeds; each model at its own lr, the best of {3e-3, 1e-2, 3e-2} on 500 "
               "validation sequences (seed 0); mean test accuracy over the copied symbols: (1) full attention >= 90 "
               "(the task is learned); (2) BigBird >= full - 5 points; (3) the window-only control (the same "
               "attention without global and random blocks, Sec. 2's W) <= full - 30 points"),
    quick=dict(task="copy", length=16, block_size=2, n_train=64, n_val=32, n_test=32, steps=4, batch_size=8,
               lrs=(3e-3,), seeds=1),
    full=dict(task="copy", length=64, block_size=2, n_train=4000, n_val=500, n_test=500, steps=300, batch_size=32,
              lrs=(3e-3, 1e-2, 3e-2), seeds=3),
)
def task_accuracy(cfg, ctx) -> ClaimResult:
    variants = {"full": ("full", None), "BigBird": ("bigbird", dict(block_size=cfg.block_size)),
                "window only": (PatternAttention, dict(pattern="W", block_size=cfg.block_size))}
    result = compare_attentions(ctx, cfg, variants)
    acc = result["accuracy"]
    checks = {"full learns the task": acc["full"] >= 90.0, "BigBird within 5 points of full":
              acc["BigBird"] >= acc["full"] - 5.0, "window only >= 30 points below full":
              acc["window only"] <= acc["full"] - 30.0}
    metrics = {"checks": checks, "density": (2 + 3 + 3) * cfg.block_size / cfg.length, **result}
    return ClaimResult(metrics=metrics, passed=all(checks.values()),
                       figure=plot_comparison(result, f"copy, n = {cfg.length}, blocks of {cfg.block_size}"),
                       notes=f"lr per model from lr_sweep_val_accuracy ({cfg.n_val} validation sequences, seed 0); "
                             "accuracy over the copied symbols; density: keys per query / n for BigBird")
