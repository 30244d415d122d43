"""The claims of the Performer paper (Choromanski et al. 2020, arXiv:2009.14794), at laptop scale.

1. `approximation_error` (Sec. 4, the figure "MSE of the approximation ... Orthogonal vs IID features"): the error
   of the FAVOR+ attention matrix falls with the number of random features m, and orthogonal features beat
   i.i.d. ones (Theorem 2).
2. `positive_features_stable` (Sec. 2.3, Lemma 2): on attention matrices with growing logits, positive features
   keep every denominator positive and a bounded error where the kernel is small, while trigonometric (sin/cos)
   features produce negative denominators and, where the kernel is small, errors orders of magnitude larger.
3. `linear_cost` (Sec. 4.1, Fig. 3): forward+backward time and memory of FAVOR+ grow linearly with the length,
   bidirectional and causal (prefix sums), where softmax attention's time grows quadratically.

Claims 1-2 work on random query/key matrices in float64, the setting of the paper's figure (L x d inputs with
d = 16), so that the only randomness compared is that of the features.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ...core.attention import FullAttention
from ...engine.bench import bench_module, loglog_slope, method_slopes, plot_cost_panels
from ...engine.claims import ClaimResult, claim
from .attention import PerformerAttention
from .features import draw_projection, random_features

KINDS = {"positive, orthogonal": ("softmax", True), "positive, iid": ("softmax", False),
         "trig, orthogonal": ("softmax_trig", True), "trig, iid": ("softmax_trig", False)}


def exact_attention(x: Tensor, y: Tensor) -> Tensor:
    """The row-normalized softmax attention matrix D^{-1} A, A = exp(x y^T) (Eq. 1; x, y already scaled): (L, L)."""
    return (x @ y.transpose(0, 1)).softmax(-1)


def estimated_kernel(x: Tensor, y: Tensor, omega: Tensor, kernel: str) -> Tensor:
    """A_hat = phi(x) phi(y)^T, the random-feature estimate of A = exp(x y^T): (L, L).

    Formed as an L x L matrix here only to measure it; the attention itself never forms it.
    """
    return random_features(x, omega, kernel) @ random_features(y, omega, kernel).transpose(0, 1)


def estimated_attention(x: Tensor, y: Tensor, omega: Tensor, kernel: str) -> tuple[Tensor, Tensor]:
    """The random-feature estimate D_hat^{-1} A_hat of the attention matrix, and the denominators D_hat."""
    a_hat = estimated_kernel(x, y, omega, kernel)                                                 # (L, L)
    den = a_hat.sum(-1)                                                                           # (L,)
    return a_hat / den.unsqueeze(-1), den


def unit_rows(n: int, d: int, generator: torch.Generator) -> Tensor:
    """n random unit vectors in R^d (float64)."""
    g = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return g / g.norm(dim=1, keepdim=True)


@claim(
    paper="performer",
    statement=("The mean squared error of the FAVOR+ attention matrix falls as the number of random features m grows, "
               "and block-orthogonal features give a lower error than i.i.d. ones at every m (Sec. 4, MSE vs m; "
               "Theorem 2)."),
    criterion=("positive features, mean MSE of the normalized attention matrix over seeds x draws: for orthogonal and "
               "for i.i.d. features it decreases at every step of m and its log-log slope against m is <= -0.75; and "
               "orthogonal < i.i.d. at every m"),
    quick=dict(length=64, dim=16, features=(16, 32, 64), draws=4, seeds=1),
    full=dict(length=512, dim=16, features=(16, 32, 64, 128, 256), draws=100, seeds=3),
)
def approximation_error(cfg, ctx) -> ClaimResult:
    d, scale = cfg.dim, cfg.dim ** -0.25
    mse = {kind: {m: [] for m in cfg.features} for kind in KINDS}            # per seed: mean over draws
    out_mse = {kind: {m: [] for m in cfg.features} for kind in KINDS}
    for seed in range(cfg.seeds):
        g = torch.Generator().manual_seed(seed)
        q, k = unit_rows(cfg.length, d, g), unit_rows(cfg.length, d, g)    # normalized inputs, as in the paper
        v = torch.randn(cfg.length, d, generator=g, dtype=torch.float64)
        x, y = q * scale, k * scale                                          # exp(x^T y) = exp(q^T k / sqrt(d))
        att = exact_attention(x, y)
        out = att @ v
        draws = torch.Generator().manual_seed(10_000 + seed)
        for kind, m in ctx.grid(KINDS, cfg.features):
            kernel, orthogonal = KINDS[kind]
            errors, out_errors = [], []
            for _ in range(cfg.draws):
                omega = draw_projection(m, d, orthogonal=orthogonal, generator=draws, dtype=torch.float64)
                est, _ = estimated_attention(x, y, omega, kernel)
                errors.append(float((est - att).pow(2).mean()))
                out_errors.append(float((est @ v - out).pow(2).mean()))
            mse[kind][m].append(float(np.mean(errors)))
            out_mse[kind][m].append(float(np.mean(out_errors)))
    mean = {kind: {m: float(np.mean(v)) for m, v in per_m.items()} for kind, per_m in mse.items()}
    out_mean = {kind: {m: float(np.mean(v)) for m, v in per_m.items()} for kind, per_m in out_mse.items()}
    slopes = {kind: loglog_slope(list(cfg.features), [mean[kind][m] for m in cfg.features]) for kind in KINDS}
    positive = ("positive, orthogonal", "positive, iid")
    falls = {kind: all(mean[kind][a] > mean[kind][b] for a, b in zip(cfg.features, cfg.features[1:]))
             for kind in positive}
    orthogonal_wins = {m: mean["positive, orthogonal"][m] < mean["positive, iid"][m] for m in cfg.features}
    passed = all(falls.values()) and all(slopes[k] <= -0.75 for k in positive) and all(orthogonal_wins.values())
    metrics = {"mse": mean, "mse_per_seed": mse, "output_mse": out_mean, "output_mse_per_seed": out_mse,
               "loglog_slope": slopes, "decreasing": falls, "orthogonal_below_iid": orthogonal_wins,
               "orthogonal_over_iid": {m: mean["positive, orthogonal"][m] / mean["positive, iid"][m]
                                       for m in cfg.features}}
    return ClaimResult(metrics, passed, figure=plot_mse_vs_features(cfg.features, mse, out_mse, cfg),
                       notes=f"L={cfg.length}, d={d}, unit-norm query/key rows, V ~ N(0, 1); {cfg.draws} feature "
                             f"draws per seed and m; MSE over all L x L entries (output: L x d)")


def plot_mse_vs_features(features, mse: dict, out_mse: dict, cfg):
    """The paper's MSE-vs-m figure redrawn: mean (and spread over seeds) for the four kinds of features."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {"positive, orthogonal": ("tab:red", "-"), "positive, iid": ("tab:red", "--"),
              "trig, orthogonal": ("tab:blue", "-"), "trig, iid": ("tab:blue", "--")}
    for ax, values, title in ((axes[0], mse, "attention matrix"), (axes[1], out_mse, "attention output")):
        for kind, (color, style) in styles.items():
            per_seed = np.array([values[kind][m] for m in features])              # (len(features), seeds)
            ax.plot(features, per_seed.mean(1), style, color=color, marker="o", label=kind)
            if per_seed.shape[1] > 1:
                ax.fill_between(features, per_seed.min(1), per_seed.max(1), color=color, alpha=0.12)
        ax.set(xscale="log", yscale="log", xlabel="number of random features m", ylabel="MSE",
               title=f"MSE of the {title}")
        ax.set_xticks(list(features), [str(m) for m in features])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"FAVOR+ approximation error vs m (L={cfg.length}, d={cfg.dim}; mean of {cfg.draws} draws, "
                 f"band: range over {cfg.seeds} input seed(s))")
    fig.tight_layout()
    return fig


@claim(
    paper="performer",
    statement=("Positive random features stay stable where trigonometric ones do not (Sec. 2.3, Lemma 2): where the "
               "softmax kernel is small, the relative error of sin/cos features explodes (like SM^-2) while that of "
               "positive features stays bounded, and sin/cos features give non-positive attention denominators, "
               "positive features never do."),
    criterion=("orthogonal features, 7 input seeds x 20 draws. Small-kernel error: the relative RMS error over draws "
               "of each entry of A_hat = phi(x) phi(y)^T, median over the entries in the lowest 10% of exp(x^T y) of "
               "the matrix. Pass if (1) positive features give no non-positive denominator in any seed at any logit "
               "scale; (2) at every logit std >= 1, trig / positive small-kernel error >= 10 as the median over "
               "seeds and in a majority of seeds; (3) that median ratio rises at every step of the logit scale (the "
               "error follows the kernel's smallness, not the feature kind alone); (4) the positive small-kernel "
               "error (median over seeds) <= 2 at every scale; (5) at the largest scale, trig features give "
               "non-positive denominators in >= 1% of rows in a majority of seeds"),
    quick=dict(length=64, dim=16, nb_features=32, logit_std=(0.25, 4.0), draws=3, small_fraction=0.1, seeds=1),
    full=dict(length=512, dim=16, nb_features=256, logit_std=(0.25, 0.5, 1.0, 2.0, 4.0), draws=20,
              small_fraction=0.1, seeds=7),
)
def positive_features_stable(cfg, ctx) -> ClaimResult:
    d = cfg.dim
    names = ("relative_error", "nonpositive_denominators", "negative_entries", "small_kernel_error")
    stats = {kernel: {name: {s: [] for s in cfg.logit_std} for name in names} for kernel in ("softmax", "softmax_trig")}
    for seed, std in ctx.grid(cfg.seeds, cfg.logit_std):
        g = torch.Generator().manual_seed(seed)
        sigma = std ** 0.5                                                   # q^T k / sqrt(d) has std sigma^2
        q = torch.randn(cfg.length, d, generator=g, dtype=torch.float64) * sigma
        k = torch.randn(cfg.length, d, generator=g, dtype=torch.float64) * sigma
        x, y = q * d ** -0.25, k * d ** -0.25
        att = exact_attention(x, y)
        kernel_values = (x @ y.transpose(0, 1)).exp()                        # A = SM(x_i, y_j), (L, L)
        small = kernel_values <= torch.quantile(kernel_values.flatten(), cfg.small_fraction)
        draws = torch.Generator().manual_seed(10_000 + seed)
        for kernel in stats:
            rel, nonpos, neg = [], [], []
            square_error = torch.zeros_like(kernel_values)
            for _ in range(cfg.draws):
                omega = draw_projection(cfg.nb_features, d, generator=draws, dtype=torch.float64)
                a_hat = estimated_kernel(x, y, omega, kernel)
                den = a_hat.sum(-1)
                est = a_hat / den.unsqueeze(-1)
                rel.append(float((est - att).norm() / att.norm()))
                nonpos.append(100.0 * float((den <= 0).double().mean()))
                neg.append(100.0 * float((a_hat < 0).double().mean()))
                square_error += (a_hat - kernel_values).pow(2) / cfg.draws
            small_error = float((square_error.sqrt() / kernel_values)[small].median())   # sqrt(Lemma 2's MSE) / SM
            for name, value in zip(names, (np.mean(rel), np.mean(nonpos), np.mean(neg), small_error)):
                stats[kernel][name][std].append(float(value))
    median = {kernel: {name: {s: float(np.median(v)) for s, v in per_s.items()} for name, per_s in per_kernel.items()}
              for kernel, per_kernel in stats.items()}
    pos, trig, top = stats["softmax"], stats["softmax_trig"], cfg.logit_std[-1]
    ratio = {s: [t / p for t, p in zip(trig["small_kernel_error"][s], pos["small_kernel_error"][s])]
             for s in cfg.logit_std}
    median_ratio = {s: float(np.median(r)) for s, r in ratio.items()}
    majority = lambda flags: sum(flags) > len(flags) / 2                     # noqa: E731
    checks = {
        "positive_never_nonpositive": all(v == 0 for per_s in pos["nonpositive_denominators"].values() for v in per_s),
        "trig_error_10x_at_small_kernel": all(median_ratio[s] >= 10 and majority([r >= 10 for r in ratio[s]])
                                              for s in cfg.logit_std if s >= 1),
        "ratio_rises_with_scale": all(a < b for a, b in zip(list(median_ratio.values()),
                                                             list(median_ratio.values())[1:])),
        "positive_error_bounded": all(v <= 2 for v in median["softmax"]["small_kernel_error"].values()),
        "trig_nonpositive_denominators": majority([v >= 1.0 for v in trig["nonpositive_denominators"][top]]),
    }
    metrics = {"positive": median["softmax"], "trigonometric": median["softmax_trig"],
               "small_kernel_error_ratio": median_ratio, "small_kernel_error_ratio_per_seed": ratio,
               "checks": checks, "per_seed": {"positive": pos, "trigonometric": trig}}
    return ClaimResult(metrics, all(checks.values()), figure=plot_stability(cfg.logit_std, median, ratio, cfg),
                       notes=f"L={cfg.length}, d={d}, m={cfg.nb_features} orthogonal features, q, k ~ N(0, sigma^2 I) "
                             "with sigma^2 = logit std; medians over seeds; percentages of rows (denominators) and "
                             "of entries")


def plot_stability(scales, median: dict, ratio: dict, cfg):
    """Against the logit scale, positive vs sin/cos features: (a) the relative error of each entry of A_hat where
    the kernel is small (Lemma 2), (b) of the normalized attention matrix, (c) the share of non-positive
    denominators; medians over seeds, dots for the seeds in (a)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for kernel, label, color in (("softmax", "positive (FAVOR+)", "tab:red"),
                                 ("softmax_trig", "trigonometric sin/cos", "tab:blue")):
        stats = median[kernel]
        for ax, name in zip(axes, ("small_kernel_error", "relative_error", "nonpositive_denominators")):
            ax.plot(scales, [stats[name][s] for s in scales], marker="o", color=color, label=label)
    axes[0].set(xscale="log", yscale="log", xlabel="std of the logits q^T k / sqrt(d)",
                ylabel="RMS(A_hat - A) / A, median",
                title=f"(a) kernel error, lowest {cfg.small_fraction:.0%} of kernel values")
    for s in scales:
        axes[0].text(s, median["softmax_trig"]["small_kernel_error"][s], f"x{np.median(ratio[s]):.3g}", fontsize=8,
                     ha="left", va="bottom")
    axes[1].set(xscale="log", yscale="log", xlabel="std of the logits q^T k / sqrt(d)",
                ylabel="||P_hat - P||_F / ||P||_F", title="(b) relative error of the attention matrix")
    axes[2].set(xscale="log", xlabel="std of the logits q^T k / sqrt(d)", ylabel="% of rows",
                title="(c) non-positive denominators D_hat_ii <= 0")
    for ax in axes:
        ax.set_xticks(list(scales), [f"{s:g}" for s in scales])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Positive vs trigonometric features as attention sharpens (L={cfg.length}, d={cfg.dim}, "
                 f"m={cfg.nb_features}; medians over {cfg.seeds} seeds)")
    fig.tight_layout()
    return fig


class CausalSelfAttention(nn.Module):
    """`attention(x, causal=True)`, so that the benchmark harness (which calls `module(x)`) times the causal form."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, x: Tensor) -> Tensor:
        return self.attention(x, causal=True)


@claim(
    paper="performer",
    statement=("FAVOR+ attention runs in linear time and memory in the sequence length, bidirectional and causal "
               "(Sec. 4.1, Fig. 3), while softmax attention's time grows quadratically."),
    criterion=("forward+backward at dim 512, 8 heads of 64, m = 256, batch 1: log-log slopes of median time and of "
               "peak memory against n (n >= 1024) <= 1.15 for the bidirectional and for the causal FAVOR+; and "
               "bidirectional FAVOR+ is faster than full attention at the largest n where both run"),
    quick=dict(sizes=(128, 256), dim=64, heads=2, dim_head=32, nb_features=32, full_up_to=256, slope_from=128,
               repeats=1, warmup=0, seeds=1),
    full=dict(sizes=(1024, 2048, 4096, 8192, 16384), dim=512, heads=8, dim_head=64, nb_features=256, full_up_to=4096,
              slope_from=1024, repeats=3, warmup=1, seeds=1),
)
def linear_cost(cfg, ctx) -> ClaimResult:
    make = lambda n: PerformerAttention(cfg.dim, cfg.heads, cfg.dim_head, nb_features=cfg.nb_features)  # noqa: E731
    inputs = lambda n: (torch.randn(1, n, cfg.dim),)                                                    # noqa: E731
    kw = dict(device=ctx.device, repeats=cfg.repeats, warmup=cfg.warmup)
    torch.manual_seed(0)
    rows = (bench_module(make, inputs, cfg.sizes, name="FAVOR+", **kw)
            + bench_module(lambda n: CausalSelfAttention(make(n)), inputs, cfg.sizes, name="FAVOR+ causal", **kw)
            + bench_module(lambda n: FullAttention(cfg.dim, cfg.heads, cfg.dim_head), inputs,
                           [n for n in cfg.sizes if n <= cfg.full_up_to], name="full (SDPA)", **kw))
    table = {method: {r["size"]: {"time_ms": r.get("time_ms"), "peak_mb": r.get("peak_mb"), "error": r.get("error")}
                      for r in rows if r["method"] == method} for method in ("FAVOR+", "FAVOR+ causal", "full (SDPA)")}
    slopes = method_slopes(rows, min_size=cfg.slope_from)
    both = [n for n in table["full (SDPA)"] if table["full (SDPA)"][n]["time_ms"] and table["FAVOR+"][n]["time_ms"]]
    largest = max(both)
    faster = table["FAVOR+"][largest]["time_ms"] < table["full (SDPA)"][largest]["time_ms"]
    passed = all(slopes[m][k] <= 1.15 for m in ("FAVOR+", "FAVOR+ causal") for k in ("time_ms", "peak_mb")) and faster
    metrics = {"rows": table, "loglog_slope": slopes, "largest_common_size": largest,
               "favor_faster_than_full_at_largest": faster}
    return ClaimResult(metrics, passed, figure=plot_cost_panels(rows, slopes, xlabel="sequence length n", title=(
                           f"Cost of one attention layer (dim {cfg.dim}, {cfg.heads} heads of {cfg.dim_head}, "
                           f"m = {cfg.nb_features}, batch 1)")),
                       notes=f"device {ctx.device}, median of {cfg.repeats} steps after {cfg.warmup} warm-up; memory: "
                             "peak bytes of tensors allocated by one step (archzoo.engine.bench.peak_memory)")
