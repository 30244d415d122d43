"""Reading benchmark rows: the empirical exponent of a cost (log-log slope) and the cost plots."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...fileio import atomic_write


def loglog_slope(sizes: Sequence[float], values: Sequence[float], min_size: float | None = None) -> float:
    """Least-squares slope of log(value) against log(size): the empirical exponent of the cost.

    Sizes below `min_size` and missing or non-positive values (failed sizes) are left out.
    """
    pairs = [(s, v) for s, v in zip(sizes, values, strict=True)
             if (min_size is None or s >= min_size) and v is not None and math.isfinite(v) and v > 0]
    if len({s for s, _ in pairs}) < 2:
        raise ValueError(f"a slope needs values at two sizes or more, got {pairs}")
    x, y = np.log(np.array(pairs, dtype=float)).T
    return float(np.polyfit(x, y, 1)[0])


def method_slopes(rows: Sequence[dict], methods: Sequence[str] | None = None,
                  keys: Sequence[str] = ("time_ms", "peak_mb"), min_size: float | None = None,
                  missing_ok: bool = False) -> dict:
    """{method: {key: log-log slope against size}} of `bench_module` rows (default: every method, in order).

    A method measured at fewer than two sizes raises ValueError, or gets None where `missing_ok`.
    """
    methods = list(dict.fromkeys(r["method"] for r in rows)) if methods is None else methods

    def slope(method: str, key: str) -> float | None:
        mine = [r for r in rows if r["method"] == method]
        try:
            return loglog_slope([r["size"] for r in mine], [r.get(key) for r in mine], min_size=min_size)
        except ValueError:
            if missing_ok:
                return None
            raise

    return {m: {key: slope(m, key) for key in keys} for m in methods}


def plot_cost_panels(rows: Sequence[dict], slopes: dict, *, xlabel: str, title: str, guides: Sequence[float] = (),
                     axes=None):
    """Time and peak memory against size (log-log) side by side, a line per method of `slopes` labelled with its
    slope; `guides` exponents (e.g. 1.5, 2) drawn through the first method's first point. Returns the figure.

    `axes`: two matplotlib axes to draw into (a panel of a larger figure; `title` then goes to neither).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8)) if axes is None else None
    for ax, key, label in zip(fig.subplots(1, 2) if axes is None else axes, ("time_ms", "peak_mb"),
                              ("forward+backward time (ms)", "peak memory (MiB)")):
        for m in slopes:
            points = [(r["size"], r[key]) for r in rows if r["method"] == m and r.get(key)]
            slope = slopes[m][key]                              # None: measured at fewer than two sizes
            if points:
                ax.plot(*zip(*points), marker="o", label=m if slope is None else f"{m} (slope {slope:.2f})")
        if guides:
            n0, y0 = next((r["size"], r[key]) for r in rows if r["method"] == next(iter(slopes)) and r.get(key))
            n = np.array(sorted({r["size"] for r in rows}), float)
            for g, style in zip(guides, (":", "--", "-.")):
                ax.plot(n, y0 * (n / n0) ** g, "k" + style, lw=1, label=f"n^{g:g}")
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if fig is not None:
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_loglog(rows: Sequence[dict], key: str, path: str | os.PathLike, title: str) -> Path:
    """Save a log-log plot of `key` (e.g. "time_ms", "peak_mb") against size, one line per method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6))
    ax = fig.subplots()
    for method in dict.fromkeys(r["method"] for r in rows):
        points = [(r["size"], r[key]) for r in rows if r["method"] == method and r.get(key, 0) > 0]
        if points:
            ax.plot(*zip(*points), marker="o", label=method)
    ax.set(xscale="log", yscale="log", xlabel="size", ylabel=key, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))
    return path
