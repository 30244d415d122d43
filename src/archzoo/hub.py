"""save_pretrained / from_pretrained: `config.json` + `model.safetensors`, never pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import MethodType

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from .fileio import atomic_write

CONFIG, WEIGHTS = "config.json", "model.safetensors"


def attach_pretrained(model: nn.Module, name: str, overrides: dict) -> nn.Module:
    try:
        json.dumps(overrides)
    except TypeError as e:
        raise ValueError(f"overrides of {name!r} must be JSON-serialisable to save the model: {e}") from None
    model.pretrained_cfg = {"model": name, "kwargs": dict(overrides)}
    model._built_num_classes = getattr(model, "num_classes", None)
    if not hasattr(type(model), "save_pretrained"):
        model.save_pretrained = MethodType(save_pretrained, model)
    return model


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write `config.json` and `model.safetensors` into `directory` (each file atomically).

    A head replaced since `create_model` (`reset_classifier(n)`) is recorded as the override `num_classes=n`, so
    `from_pretrained` rebuilds the model with that head.
    """
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is None:
        raise ValueError("save_pretrained needs a model built by archzoo.create_model (it records the preset name)")
    num_classes = getattr(model, "num_classes", None)
    if num_classes != getattr(model, "_built_num_classes", None):
        cfg = {**cfg, "kwargs": {**cfg["kwargs"], "num_classes": num_classes}}
    directory = Path(directory)
    atomic_write(directory / WEIGHTS, lambda tmp: save_model(model, tmp))
    atomic_write(directory / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(cfg, indent=2) + "\n"))
    return directory


def from_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu", **overrides) -> nn.Module:
    """Rebuild the preset recorded in `config.json` and load `model.safetensors` into it (strict)."""
    from .registry import create_model

    directory = Path(directory)
    for f in (CONFIG, WEIGHTS):
        if not (directory / f).exists():
            raise ValueError(f"{directory} is not a saved archzoo model: {f} is missing")
    cfg = json.loads((directory / CONFIG).read_text())
    model = create_model(cfg["model"], **{**cfg.get("kwargs", {}), **overrides})
    load_model(model, directory / WEIGHTS, strict=True, device=str(map_location))
    return model
