"""save_pretrained and the files of `archzoo.from_pretrained`: `config.json` + `model.safetensors`, never pickle.

`config.json` holds the preset name, its overrides and the SHA-256 of `model.safetensors`:

    {"model": "resnet20", "kwargs": {"num_classes": 7}, "weights_sha256": "9f86d0..."}

Both files are written into a temporary folder beside the target and renamed into place together
(`fileio.atomic_write_dir`), so a save that is interrupted leaves the previous pair whole, never new weights
beside an old config. Other entries of the target folder (a training run's logs, a user's notes) are kept.

`from_pretrained` checks everything it can before it builds the model: the config's JSON and types, the
weights' SHA-256 (a config without it, from an older save, still loads), that the preset builds on the meta
device with these arguments and is not absurdly large for the weights file, and that the weights file is a
readable safetensors file. Every problem is a ValueError naming the file; a `pytorch_model.bin` is ignored.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import MethodType

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from .fileio import atomic_write_dir, sha256

CONFIG, WEIGHTS = "config.json", "model.safetensors"
HASH_KEY = "weights_sha256"
SIZE_FACTOR, SIZE_SLACK = 8, 16 << 20   # a build over 8 x the weights file + 16 MiB is refused (see check_size)


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
    """Write `config.json` and `model.safetensors` into `directory`, both or neither (see the module's docstring).

    A head replaced since `create_model` (`reset_classifier(n)`) is recorded as the override `num_classes=n`, so
    `from_pretrained` rebuilds the model with that head.
    """
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is None:
        raise ValueError("save_pretrained needs a model built by archzoo.create_model (it records the preset name)")
    num_classes = getattr(model, "num_classes", None)
    if num_classes != getattr(model, "_built_num_classes", None):
        cfg = {**cfg, "kwargs": {**cfg["kwargs"], "num_classes": num_classes}}

    def write(folder: Path) -> None:
        save_model(model, str(folder / WEIGHTS))
        config = {**cfg, HASH_KEY: sha256(folder / WEIGHTS)}
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")

    return atomic_write_dir(directory, write, keep_others=True)


def read_config(path: str | os.PathLike) -> dict:
    """A saved model's `config.json`, checked: a JSON object with a string `model`, an object `kwargs` (optional)
    and a 64-hex-digit `weights_sha256` (optional); anything else is a ValueError naming the file."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a JSON object with \"model\" and \"kwargs\", got a {_json_type(cfg)}")
    if not isinstance(cfg.get("model"), str):
        got = "nothing" if "model" not in cfg else f"a {_json_type(cfg['model'])}"
        raise ValueError(f"{path}: \"model\" must be the name of a preset (a string), got {got}")
    if not isinstance(cfg.setdefault("kwargs", {}), dict):
        raise ValueError(f"{path}: \"kwargs\" must be an object of the preset's arguments, "
                         f"got a {_json_type(cfg['kwargs'])}")
    digest = cfg.get(HASH_KEY)
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise ValueError(f"{path}: \"{HASH_KEY}\" must be 64 hex digits, got {digest!r}")
    return cfg


def check_saved(directory: str | os.PathLike) -> tuple[dict, Path, Path]:
    """`(config, config path, weights path)` of a saved model, after every check that needs no model: both files
    exist, the config is valid (`read_config`), the weights match its SHA-256 and are a readable safetensors file."""
    directory = Path(directory)
    config, weights = directory / CONFIG, directory / WEIGHTS
    for f in (config, weights):
        if not f.is_file():
            raise ValueError(f"{directory} is not a saved archzoo model: {f.name} is missing")
    cfg = read_config(config)
    if cfg.get(HASH_KEY) is not None and sha256(weights) != cfg[HASH_KEY]:
        raise ValueError(f"{weights}: SHA-256 does not match the one recorded in {config} "
                         "(the file is corrupt, truncated or from another save)")
    try:
        with safe_open(str(weights), framework="pt"):
            pass
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{weights}: not a readable safetensors file ({e})") from None
    return cfg, config, weights


def load_weights(model: nn.Module, weights: Path, config: Path, map_location="cpu") -> nn.Module:
    """Load `weights` into `model` (strict); a mismatch is a ValueError naming both files."""
    try:
        load_model(model, weights, strict=True, device=str(map_location))
    except (SafetensorError, RuntimeError) as e:
        raise ValueError(f"{weights}: does not fit {model.pretrained_cfg['model']!r} built from {config} "
                         f"({' '.join(str(e).split())[:300]})") from None
    return model


def check_size(meta: nn.Module, weights: Path, config: Path) -> None:
    """Refuse to build a model far larger than the weights it is to receive (a config that would fill memory).

    The file stores tied weights once and may hold a narrower dtype, so only a factor beyond any such reason
    (SIZE_FACTOR, plus SIZE_SLACK for small models) counts as absurd.
    """
    need = sum(t.numel() * t.element_size() for t in meta.state_dict().values())
    have = weights.stat().st_size
    if need > SIZE_FACTOR * have + SIZE_SLACK:
        raise ValueError(f"{config}: the model it describes has {need:,} bytes of weights, but {weights} holds "
                         f"{have:,}: refusing to build it")


def _json_type(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")
