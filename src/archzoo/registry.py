"""The registry: papers, claims, model presets, attentions and layers.

Every paper of the course is a `Paper` from the start (`catalog.py`); a paper's
folder adds to it by decorating its presets with `register_model`, its
attention with `register_attention`, its layers with `register_layer` and its
experiments with `engine.claims.claim`. Status is derived from those and from
the committed results, never typed by hand.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import json
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import FAMILIES, PAPERS


class UnknownNameError(ValueError):
    """A slug, model, attention or claim name that is not registered (message names the closest ones)."""


def unknown(kind: str, name: str, known) -> UnknownNameError:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    where = "models" if kind == "model" else "list"
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see `archzoo {where}`"
    return UnknownNameError(f"unknown {kind} {name!r}{hint}")


@dataclass
class Claim:
    """One falsifiable statement of a paper, with the experiment that decides it.

    `fn(cfg, ctx) -> ClaimResult`; `quick` runs in seconds (tests), `full` is the reproduction.
    The criterion is written here, before anything runs, and `passed` is computed from the metrics.
    """

    paper: str
    name: str
    statement: str
    criterion: str
    quick: dict
    full: dict
    fn: Callable
    demo: dict | None = None

    def result(self) -> dict | None:
        """The committed evidence `results/<slug>/<name>.json` of the full run, or None."""
        path = results_dir() / self.paper / f"{self.name}.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None


@dataclass
class Paper:
    slug: str
    title: str
    arxiv: str | None
    year: int
    family: str
    summary: str
    models: list[str] = field(default_factory=list)
    attentions: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    claims: dict[str, Claim] = field(default_factory=dict)

    @property
    def url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else None

    @property
    def status(self) -> str:
        """`planned` (metadata only), `implemented` (models/layers registered), `reproduced` (every claim passed)."""
        if not (self.models or self.attentions or self.layers):
            return "planned"
        if self.claims and all((r := c.result()) is not None and r.get("passed") is True
                               for c in self.claims.values()):
            return "reproduced"
        return "implemented"

    def claims_passed(self) -> tuple[int, int]:
        results = [c.result() for c in self.claims.values()]
        return sum(1 for r in results if r is not None and r.get("passed") is True), len(results)


_PAPERS: dict[str, Paper] = {
    slug: Paper(slug, title, arxiv, year, family, summary) for slug, title, arxiv, year, family, summary in PAPERS
}
_MODELS: dict[str, tuple[Callable, str]] = {}      # name -> (factory, paper slug)
_ATTENTIONS: dict[str, type] = {}
_LAYERS: dict[str, object] = {}
_BENCHES: dict[str, Callable] = {}
_loaded = False


def _paper(slug: str) -> Paper:
    if slug not in _PAPERS:
        raise unknown("paper", slug, _PAPERS)
    return _PAPERS[slug]


def _load_papers() -> None:
    """Import every paper folder once so that its decorators run.

    The flag is set first (a paper's import may look names up); a folder that fails to import clears it and
    raises, so every later lookup raises too instead of silently missing that paper's names.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import papers

    try:
        for info in pkgutil.iter_modules(papers.__path__):
            if info.ispkg:
                importlib.import_module(f"{papers.__name__}.{info.name}")
    except BaseException:
        _loaded = False
        raise


def register_model(name: str | None = None, *, paper: str):
    """Decorate a preset factory `f(**overrides) -> nn.Module`, timm style."""

    def deco(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _MODELS and _MODELS[key][0] is not fn:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = (fn, paper)
        if key not in _paper(paper).models:
            _paper(paper).models.append(key)
        return fn

    return deco


def register_attention(name: str, *, paper: str | None = None):
    """Put an attention class `(dim, heads=8, dim_head=64, dropout=0.0, **kw)` into `Transformer(attention=name)`."""

    def deco(cls: type) -> type:
        _ATTENTIONS[name] = cls
        if paper is not None and name not in _paper(paper).attentions:
            _paper(paper).attentions.append(name)
        return cls

    return deco


def register_layer(name: str | None = None, *, paper: str):
    """Record a paper's layer (a normalization, an operator) so the paper counts as implemented."""

    def deco(obj):
        key = name or obj.__name__
        _LAYERS[key] = obj
        if key not in _paper(paper).layers:
            _paper(paper).layers.append(key)
        return obj

    return deco


def register_claim(c: Claim) -> Claim:
    _paper(c.paper).claims[c.name] = c
    return c


def register_bench(name: str):
    """Decorate a benchmark suite `f(args) -> None` run by `archzoo bench <name>`."""

    def deco(fn: Callable) -> Callable:
        _BENCHES[name] = fn
        return fn

    return deco


# ----------------------------------------------------------------------------- lookups


def get_paper(slug: str) -> Paper:
    _load_papers()
    return _paper(slug)


def list_papers(family: str | None = None) -> list[Paper]:
    _load_papers()
    if family is not None and family not in FAMILIES:
        raise unknown("family", family, FAMILIES)
    return [p for p in _PAPERS.values() if family is None or p.family == family]


def list_models(pattern: str = "*") -> list[str]:
    _load_papers()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_paper(name: str) -> str:
    _load_papers()
    if name not in _MODELS:
        raise unknown("model", name, _MODELS)
    return _MODELS[name][1]


def get_attention(name: str) -> type:
    _load_papers()
    if name not in _ATTENTIONS:
        raise unknown("attention", name, _ATTENTIONS)
    return _ATTENTIONS[name]


def list_attentions() -> list[str]:
    _load_papers()
    return sorted(_ATTENTIONS)


def get_bench(name: str) -> Callable:
    _load_papers()
    if name not in _BENCHES:
        raise unknown("benchmark", name, _BENCHES)
    return _BENCHES[name]


def list_benches() -> list[str]:
    _load_papers()
    return sorted(_BENCHES)


def get_claim(slug: str, name: str) -> Claim:
    paper = get_paper(slug)
    if name not in paper.claims:
        raise unknown(f"claim of {slug}", name, paper.claims)
    return paper.claims[name]


def create_model(name: str, **overrides):
    """Build a registered preset: `create_model("resnet50", num_classes=10)`.

    The result carries `pretrained_cfg` (name + overrides) and `save_pretrained(dir)`.
    """
    _load_papers()
    if name not in _MODELS:
        raise unknown("model", name, _MODELS)
    model = _MODELS[name][0](**overrides)
    from .hub import attach_pretrained

    return attach_pretrained(model, name, overrides)


def repo_root() -> Path | None:
    """The source checkout holding this package (editable install), or None for a site-packages install."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() and (root / "src" / "archzoo").is_dir() else None


def results_dir() -> Path:
    """Where committed evidence lives: $ARCHZOO_RESULTS, else `<checkout>/results`, else `./results`."""
    if env := os.environ.get("ARCHZOO_RESULTS"):
        return Path(env)
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "results"
