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
import inspect
import json
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .catalog import FAMILIES, PAPERS
from .hub import attach_pretrained, check_saved, check_size, load_weights


class UnknownNameError(ValueError):
    """A slug, model, attention or claim name that is not registered (message names the closest ones)."""


class UnknownArgumentError(ValueError, TypeError):
    """A keyword argument that a model preset does not take (message lists the ones it takes).

    Also a `TypeError`, what Python raises for an unexpected keyword argument, so `except TypeError` still works.
    """


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


class Table(dict):
    """One registration table, name -> entry, of a `kind` ("model", "dataset", "feed-forward", ...).

    Every table of the project is made by `table(kind)` and listed in `TABLES`, whichever module registers
    into it (the registry here, core's feed-forwards, data's datasets, engine's benchmark settings).
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, name: str, entry, *, same: Callable = lambda a, b: a is b):
        """Register `entry` as `name`; the same name again with an entry that is not `same` raises ValueError."""
        if name in self and not same(self[name], entry):
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self[name] = entry
        return entry

    def lookup(self, name: str):
        """The entry of `name` (papers imported first); an unknown name raises UnknownNameError."""
        _load_papers()
        if name not in self:
            raise unknown(self.kind, name, self)
        return self[name]


TABLES: dict[str, Table] = {}


def table(kind: str) -> Table:
    """The registration table of `kind`, created on first use."""
    return TABLES.setdefault(kind, Table(kind))


_MODELS = table("model")                            # name -> (factory, paper slug)
_CFGS = table("model config")                       # name -> the pretrained_cfg declared at registration
_ATTENTIONS = table("attention")                    # name -> class
_LAYERS = table("layer")                            # name -> class or function
_BENCHES = table("benchmark")                       # name -> suite f(args)
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


# Normalisations that presets declare in their pretrained_cfg (per channel, for inputs in [0, 1]).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)     # ImageNet statistics
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)                # inputs scaled to [-1, 1]
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10 statistics
IMAGENET_CFG = dict(input_size=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=1000,
                    task="image-classification")
CIFAR10_CFG = dict(input_size=(3, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD, num_classes=10,
                   task="image-classification")
IMAGE_TASKS = ("image-classification", "panoptic-segmentation", "image-reconstruction")
CFG_REQUIRED = ("input_size", "num_classes", "task")
CFG_OPTIONAL = ("mean", "std", "min_input_size", "fixed_input_size", "test_input_size")


def register_model(name: str | None = None, *, paper: str, kwargs_to: Callable | None = None, **cfg):
    """Decorate a preset factory `f(**overrides) -> nn.Module`, timm style, declaring its default `pretrained_cfg`.

    `cfg` gives `input_size` ((C, H, W) for images, (max length,) for sequences), `num_classes`, `task`
    ("image-classification", "sequence-classification", "language-modeling", ...) and, for image tasks, the
    normalisation the paper used (`mean`, `std` per channel, for inputs in [0, 1]); optionally `min_input_size`,
    `fixed_input_size` (the input must have exactly `input_size`) and `test_input_size`. Every preset of the course
    declares it (tests/contract checks that); a throwaway registration in a test may leave `cfg` empty.

    The keyword arguments a preset accepts (`accepted_kwargs`) are the factory's own; a factory's `**kwargs` are
    followed into `kwargs_to`, else into the class of its return annotation, and a class's `**kwargs` into its base
    class.
    """
    missing = [k for k in CFG_REQUIRED + (("mean", "std") if cfg.get("task") in IMAGE_TASKS else ()) if k not in cfg]
    unexpected = sorted(set(cfg) - set(CFG_REQUIRED) - set(CFG_OPTIONAL))
    if (cfg and missing) or unexpected:
        raise ValueError(f"register_model({name or '...'}): pretrained_cfg lacks {missing} or has unknown keys "
                         f"{unexpected}; it takes {', '.join(CFG_REQUIRED + CFG_OPTIONAL)}")

    def deco(fn: Callable) -> Callable:
        key = name or fn.__name__
        _MODELS.add(key, (fn, paper), same=lambda a, b: a[0] is b[0])
        _CFGS[key] = {"mean": None, "std": None, **cfg, "input_size": tuple(cfg["input_size"])} if cfg else {}
        if kwargs_to is not None:
            fn.kwargs_to = kwargs_to
        if key not in _paper(paper).models:
            _paper(paper).models.append(key)
        return fn

    return deco


def register_attention(name: str, *, paper: str | None = None):
    """Put an attention class `(dim, heads=8, dim_head=64, dropout=0.0, **kw)` into `Transformer(attention=name)`."""

    def deco(cls: type) -> type:
        _ATTENTIONS.add(name, cls)
        if paper is not None and name not in _paper(paper).attentions:
            _paper(paper).attentions.append(name)
        return cls

    return deco


def register_layer(name: str | None = None, *, paper: str):
    """Record a paper's layer (a normalization, an operator) so the paper counts as implemented."""

    def deco(obj):
        key = name or obj.__name__
        _LAYERS.add(key, obj)
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
        _BENCHES.add(name, fn)
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


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Preset names matching `pattern` (fnmatch); `pretrained=True` lists those with weights: none in archzoo."""
    _load_papers()
    return [] if pretrained else sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_paper(name: str) -> str:
    return _MODELS.lookup(name)[1]


def get_attention(name: str) -> type:
    return _ATTENTIONS.lookup(name)


def list_attentions() -> list[str]:
    _load_papers()
    return sorted(_ATTENTIONS)


def get_bench(name: str) -> Callable:
    return _BENCHES.lookup(name)


def list_benches() -> list[str]:
    _load_papers()
    return sorted(_BENCHES)


def get_claim(slug: str, name: str) -> Claim:
    paper = get_paper(slug)
    if name not in paper.claims:
        raise unknown(f"claim of {slug}", name, paper.claims)
    return paper.claims[name]


def get_pretrained_cfg(name: str) -> dict:
    """The `pretrained_cfg` a preset declares at registration (`input_size`, `mean`, `std`, `num_classes`, `task`,
    ...), without building it."""
    _load_papers()
    if name not in _MODELS:
        raise unknown("model", name, _MODELS)
    return dict(_CFGS[name])


def _keywords(fn: Callable) -> tuple[set[str], bool]:
    """The keyword arguments with defaults that `fn` (a function, or a class's `__init__`) takes by itself, and
    whether it also has `**kwargs`. Arguments without a default are the ones a factory must pass itself."""
    params = inspect.signature(fn).parameters.values()
    named = {p.name for p in params if p.default is not p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def _accepted(target) -> set[str] | None:
    """Keywords `target` accepts, following `**kwargs` (see `register_model`); None where they lead nowhere."""
    if isinstance(target, type):
        named, more = _keywords(target.__init__)
        bases = [b for b in target.__mro__[1:] if "__init__" in vars(b)]
        follow = bases[0] if more and bases and bases[0] is not object else None
    else:
        named, more = _keywords(target)
        returns = inspect.get_annotations(target, eval_str=True).get("return")
        follow = getattr(target, "kwargs_to", None) or (returns if isinstance(returns, type) else None)
    if not more:
        return named
    rest = _accepted(follow) if follow is not None and follow.__module__.split(".")[0] != "torch" else None
    return None if rest is None else named | rest


def accepted_kwargs(name: str) -> tuple[str, ...] | None:
    """The keyword arguments `create_model(name, ...)` accepts, sorted; None if the preset's factory passes
    `**kwargs` on to something that cannot be inspected (then every keyword reaches the factory)."""
    _load_papers()
    if name not in _MODELS:
        raise unknown("model", name, _MODELS)
    accepted = _accepted(_MODELS[name][0])
    return None if accepted is None else tuple(sorted(accepted))


def create_model(name: str, pretrained: bool = False, **overrides):
    """Build a registered preset: `create_model("resnet50", num_classes=10)`.

    The result carries `pretrained_cfg` (the preset's declared one, with `num_classes` and `input_size` read back
    from the built model, so overrides such as `num_classes` or `img_size` update them; plus the name and the
    overrides, which `save_pretrained(dir)` records). archzoo ships no weights: `pretrained=True` is an error that
    says how to load your own. A keyword the preset does not accept is an `UnknownArgumentError` listing those it
    does.
    """
    _load_papers()
    if name not in _MODELS:
        raise unknown("model", name, _MODELS)
    if pretrained:
        raise ValueError(f"archzoo ships no pretrained weights, for {name!r} or any other preset: "
                         f"create_model({name!r}) builds it randomly initialised; to load weights you trained, save "
                         f"them with model.save_pretrained(dir) and load them with archzoo.from_pretrained(dir)")
    accepted = accepted_kwargs(name)
    unexpected = [] if accepted is None else sorted(set(overrides) - set(accepted))
    if unexpected:
        raise UnknownArgumentError(f"{name} does not take {', '.join(map(repr, unexpected))}; it takes "
                                   f"{', '.join(accepted) or 'no keyword arguments'}")
    model = _MODELS[name][0](**overrides)
    attach_pretrained(model, name, overrides)
    cfg = {**_CFGS[name], **model.pretrained_cfg}
    cfg["num_classes"] = getattr(model, "num_classes", cfg.get("num_classes"))
    if hasattr(model, "default_input_size"):                   # images: (C, H, W) after overrides
        cfg["input_size"] = tuple(model.default_input_size)
    elif hasattr(model, "max_len"):                            # sequences: the longest input
        cfg["input_size"] = (model.max_len,)
    if hasattr(model, "min_input_size"):
        cfg["min_input_size"] = tuple(model.min_input_size)
    model.pretrained_cfg = cfg
    return model


def from_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu", **overrides):
    """Rebuild the preset recorded in `directory/config.json` and load `model.safetensors` into it (strict).

    `overrides` change the recorded arguments (e.g. `img_size=384` to fine-tune a ViT at a higher resolution).
    Everything that can be checked before building is (see `archzoo.hub`): the files, the config, the weights'
    SHA-256, and, on the meta device, that the preset builds with these arguments and is not absurdly large for
    the weights file. Every problem is a ValueError naming the file.
    """
    cfg, config, weights = check_saved(directory)
    name, kwargs = cfg["model"], {**cfg["kwargs"], **overrides}
    try:
        with torch.device("meta"):
            meta = create_model(name, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{config}: cannot build {name!r} with {kwargs}: {e}") from None
    except RuntimeError:
        meta = None                      # a preset that cannot be built on the meta device: no size check
    if meta is not None:
        check_size(meta, weights, config)
    return load_weights(create_model(name, **kwargs), weights, config, map_location)


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
