"""Claims: a paper's falsifiable statement, its experiment, and the runner that writes the evidence.

    @claim(paper="resnet", statement="...", criterion="...", quick=dict(steps=20, seeds=1), full=dict(...))
    def degradation(cfg, ctx) -> ClaimResult: ...

`run_claim` runs one in `quick`, `demo` or `full` mode over its seeds and writes
`<claim>.json` (config, metrics, criterion, passed, datasets and substitutes,
versions, provenance: git commit, threads, load; wall time) and `<claim>.png`:
full runs into `results/<slug>/`, quick runs into `runs/<slug>/` (git-ignored),
never into `results/`. Quick and demo runs may substitute a fallback data set
(`ctx.dataset(name, fallback=...)`), and then say so; full runs never do.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_write
from ..registry import Claim, get_claim, register_claim, repo_root, results_dir
from .provenance import load_average, provenance_start
from .runtime import resolve_device, seed_everything
from .train import fit_and_eval


@dataclass
class ClaimResult:
    """What a claim returns: its metrics, `passed` computed from them by the criterion, and its figure."""

    metrics: dict
    passed: bool
    figure: Any = None          # a matplotlib Figure, saved as <claim>.png
    notes: str = ""


class Config(SimpleNamespace):
    """A claim's configuration with attribute access (`cfg.steps`)."""

    def to_dict(self) -> dict:
        return dict(vars(self))


def claim(*, paper: str, statement: str, criterion: str, quick: dict, full: dict, demo: dict | None = None,
          name: str | None = None):
    """Register the decorated `fn(cfg, ctx) -> ClaimResult` as a claim of `paper`.

    `demo` (optional) is a config between quick and full that shows real learning in a minute or two;
    `archzoo demo` runs it. Only `full` produces evidence.
    """
    if any("seeds" not in c for c in (quick, full, demo or {"seeds": 1})):
        raise ValueError("a claim's quick, full (and demo) configs must each say how many seeds they run")

    def deco(fn):
        register_claim(Claim(paper, name or fn.__name__, statement, criterion, dict(quick), dict(full), fn,
                             dict(demo) if demo else None))
        return fn

    return deco


@dataclass
class ClaimContext:
    """What a claim gets besides its config: device, data, seeding and the shared fit/eval loop."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data_dir: str | None = None
    mode: str = "quick"
    progress: bool = True
    datasets_used: dict = field(default_factory=dict)
    substitutes: dict = field(default_factory=dict)     # {dataset asked for: the fallback that ran instead}

    def dataset(self, name: str, fallback: str | None = None, **kw):
        """Load `name` (see `archzoo.data.load_dataset`); if it is unavailable, `fallback` in quick and demo runs.

        A substitute is never silent: it is recorded (`substitutes` in the record, `PASS (on digits)` in
        the verdict, a banner after the run). A full run never substitutes: its record is evidence about
        `name`, so it raises `DatasetUnavailable` here, before anything trains.
        """
        from ..data import DatasetUnavailable, load_dataset

        try:
            data = load_dataset(name, data_dir=self.data_dir, **kw)
        except DatasetUnavailable as e:
            if fallback is None:
                raise
            if self.mode == "full":
                raise DatasetUnavailable(f"a full run needs {name} itself and never substitutes {fallback} (use "
                                         f"--quick to try the pipeline on {fallback}): {e}") from e
            print(f"[archzoo] {name} unavailable; this {self.mode} run uses {fallback} instead", file=sys.stderr)
            data = load_dataset(fallback, **kw)
            self.substitutes[name] = fallback
        self.datasets_used[name] = getattr(data, "name", name)
        return data

    @staticmethod
    def grid(*axes):
        """The product of the axes; an int axis n means range(n) (seeds), a dict means its keys."""
        axes = [range(a) if isinstance(a, int) else (list(a) if isinstance(a, dict) else a) for a in axes]
        return list(itertools.product(*axes))

    @staticmethod
    def seed(seed: int) -> None:
        seed_everything(seed)

    def fit_and_eval(self, model, data, **kw):
        """Train `model` on `data.train` and evaluate on `data.test` (see `engine.train.fit_and_eval`)."""
        kw.setdefault("device", self.device)
        kw.setdefault("progress", self.progress)
        return fit_and_eval(model, data, **kw)


def mean_over_seeds(values: dict) -> dict:
    """{key: [per-seed values]} -> {key: mean}."""
    return {k: float(np.mean(v)) for k, v in values.items()}


def versions() -> dict:
    from .. import __version__

    return {"archzoo": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def verdict(record: dict) -> str:
    """`PASS` or `FAIL`, and `(on digits)` when the run used a substitute data set."""
    text = "PASS" if record["passed"] else "FAIL"
    used = sorted(set(record.get("substitutes", {}).values()))
    return f"{text} (on {', '.join(used)})" if used else text


def substitute_banner(record: dict) -> str:
    """The lines that say, after a run, that it ran on substitute data and what its verdict is then about."""
    subs = record["substitutes"]
    swaps = ", ".join(f"{used} instead of {asked}" for asked, used in subs.items())
    used = ", ".join(sorted(set(subs.values())))
    rule = "!" * 100
    return "\n".join([
        rule,
        f"!! {record['paper']}.{record['claim']} ({record['mode']}) ran on SUBSTITUTE data: {swaps}.",
        f"!! Its verdict, {verdict(record)}, is about {used}, not about the claim's own data set.",
        *(f"!! To get {asked}: `archzoo data where {asked}` says where it is looked for and how." for asked in subs),
        rule,
    ])


def runs_dir() -> Path:
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "runs"


def run_claim(slug: str, name: str, mode: str = "quick", *, seeds: int | None = None, device: str = "auto",
              data_dir: str | None = None, out_dir: str | os.PathLike | None = None, progress: bool = True,
              overrides: dict | None = None) -> dict:
    """Run one claim and write its record + figure; returns the record.

    Quick and demo runs (and full runs with overrides, which are not the committed configuration)
    go to `runs/<slug>/` unless `out_dir` says otherwise; full runs go to `results/<slug>/`.
    """
    if mode not in ("quick", "demo", "full"):
        raise ValueError(f"mode must be 'quick', 'demo' or 'full', got {mode!r}")
    c = get_claim(slug, name)
    if mode == "demo" and c.demo is None:
        raise ValueError(f"claim {slug}.{name} has no demo config")
    cfg = Config(**{"quick": c.quick, "demo": c.demo, "full": c.full}[mode])
    if seeds is not None:
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        cfg.seeds = seeds
    for k, v in (overrides or {}).items():
        cfg.__dict__[k] = v
    official = mode == "full" and seeds is None and not overrides
    ctx = ClaimContext(device=resolve_device(device), data_dir=data_dir, mode=mode, progress=progress)
    provenance = provenance_start(repo_root())
    seed_everything(0)
    t0 = time.time()
    result = c.fn(cfg, ctx)
    wall = time.time() - t0
    provenance["load_avg_end"] = load_average()
    if not isinstance(result, ClaimResult):
        raise TypeError(f"claim {slug}.{name} must return a ClaimResult, got {type(result).__name__}")
    if out_dir is None:
        out_dir = (results_dir() if official else runs_dir()) / slug
    out_dir = Path(out_dir)
    record = {
        "paper": slug, "claim": name, "statement": c.statement, "criterion": c.criterion,
        "mode": mode, "config": _jsonable(cfg.to_dict()), "metrics": _jsonable(result.metrics),
        "passed": bool(result.passed), "notes": result.notes, "datasets": ctx.datasets_used,
        "substitutes": ctx.substitutes, "device": str(ctx.device), "wall_time_s": round(wall, 1),
        "versions": versions(), "provenance": provenance,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "figure": f"{name}.png" if result.figure is not None else None,
    }
    if result.figure is not None:
        atomic_write(out_dir / f"{name}.png", lambda p: result.figure.savefig(p, format="png", dpi=120,
                                                                                bbox_inches="tight"))
        import matplotlib.pyplot as plt

        plt.close(result.figure)
    atomic_write(out_dir / f"{name}.json",
                  lambda p: Path(p).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n"))
    record["path"] = str(out_dir / f"{name}.json")
    if ctx.substitutes:                 # after the progress bars have closed, where it cannot scroll away among them
        sys.stdout.flush()
        print(substitute_banner(record), file=sys.stderr, flush=True)
    return record
