"""Checkpoints: safetensors + JSON, written atomically, verified on load, never pickle.

A checkpoint is a directory:

    model.safetensors       the model's weights (tied weights stored once)
    optimizer.safetensors   the optimizer's state tensors (moments, step counts) ...
    optimizer.json          ... and its structure: param groups, hyperparameters, non-tensor state
    scheduler.json          the learning-rate scheduler's state
    rng.safetensors         torch's CPU (and CUDA) generator states
    rng.json                numpy's and Python's `random` states
    meta.json               step, caller's `extra`, the optimizer's class and the SHA-256 of every file above

Several named models, optimizers and schedulers (a GAN's `{"G": ..., "D": ...}`) go to
`model.G.safetensors`, `optimizer.D.json`, ...; an entry named like its kind (`{"model": m}`) uses
the plain file names above. Named `states` (a hook's EMA weights: nested dicts of tensors and JSON
values) go to `state.<name>.json` + `state.<name>.safetensors` and come back in `meta["states"]`.

It is written into a temporary directory beside its destination and renamed
into place only when complete, so a crash leaves the previous checkpoint
intact. `load_checkpoint` checks every checksum before touching the model and
raises `CheckpointError` naming the file that is missing, truncated or corrupt,
or that does not fit the model or optimizer it is loaded into.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from ..fileio import atomic_write_dir, sha256

FORMAT = "archzoo-checkpoint"
VERSION = 1
_TENSOR = "__tensor__"      # placeholder for a tensor moved out of a JSON structure


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, truncated or corrupt."""


# ----------------------------------------------------------------------------- tensors <-> JSON


def _split_tensors(obj, prefix: str, tensors: dict):
    """Replace every tensor in a nested dict/list by a placeholder and collect it in `tensors`."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        return {str(k): _split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj, tensors: dict):
    """Inverse of `_split_tensors`."""
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def _optimizer_state(saved: dict, optimizer: torch.optim.Optimizer) -> dict:
    """Turn JSON's string keys back into parameter indices and its lists back into the optimizer's tuples."""
    groups = []
    for group, current in zip(saved["param_groups"], optimizer.param_groups):
        groups.append({k: tuple(v) if isinstance(current.get(k), tuple) else v for k, v in group.items()})
    return {"state": {int(k): v for k, v in saved["state"].items()}, "param_groups": groups}


# ----------------------------------------------------------------------------- RNG


def _rng_state() -> tuple[dict, dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return tensors, {"numpy": [name, keys.tolist(), pos, has_gauss, cached],
                     "python": [version, list(internal), gauss_next]}


def _set_rng_state(tensors: dict, state: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(k.startswith("cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ----------------------------------------------------------------------------- files


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


def _is_step(step) -> bool:
    return isinstance(step, int) and not isinstance(step, bool) and step >= 0


def _stem(kind: str, name: str, plain: bool = True) -> str:
    """The file stem of the entry `name` of `kind`: `optimizer.D`, or `optimizer` for the entry named like its
    kind (when `plain`)."""
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"checkpoint entry names use letters, digits, '_' and '-', got {kind} {name!r}")
    return kind if plain and name == kind else f"{kind}.{name}"


def _write_nested(tmp: Path, stem: str, obj) -> None:
    """A nested structure as `<stem>.json`, its tensors in `<stem>.safetensors`."""
    tensors: dict = {}
    _write_json(tmp / f"{stem}.json", _split_tensors(obj, stem, tensors))
    save_file(tensors, str(tmp / f"{stem}.safetensors"))


def _write_files(tmp: Path, *, models: dict, optimizers: dict, schedulers: dict, states: dict, step: int,
                 extra) -> None:
    """Write every file of a checkpoint into `tmp`, meta.json last."""
    for name, model in models.items():
        save_model(model, str(tmp / f"{_stem('model', name)}.safetensors"))
    for name, optimizer in optimizers.items():
        _write_nested(tmp, _stem("optimizer", name), optimizer.state_dict())
    for name, scheduler in schedulers.items():
        _write_json(tmp / f"{_stem('scheduler', name)}.json", scheduler.state_dict())
    for name, state in states.items():
        _write_nested(tmp, _stem("state", name, plain=False), state)
    rng_tensors, rng_json = _rng_state()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    _write_json(tmp / "rng.json", rng_json)
    files = {p.name: sha256(p) for p in sorted(tmp.iterdir())}
    meta = {"format": FORMAT, "version": VERSION, "step": step, "extra": extra or {}, "files": files,
            "optimizers": {name: type(opt).__name__ for name, opt in optimizers.items()}}
    _write_json(tmp / "meta.json", meta)


def _with(one, named: dict | None, kind: str) -> dict:
    """`named` with `one` added under the name `kind` (the single model, optimizer or scheduler)."""
    named = dict(named or {})
    if one is not None:
        if kind in named:
            raise ValueError(f"give the {kind} as `{kind}=` or as {kind}s[{kind!r}], not both")
        named[kind] = one
    return named


def save_checkpoint(directory, *, model: torch.nn.Module | None = None, optimizer=None, scheduler=None, step: int,
                    extra: dict | None = None, models: dict | None = None, optimizers: dict | None = None,
                    schedulers: dict | None = None, states: dict | None = None) -> Path:
    """Write a checkpoint to `directory` atomically, replacing any checkpoint already there.

    `extra` is any JSON-serialisable dict (e.g. the training history); it comes back in
    `load_checkpoint(...)["extra"]`. `models`, `optimizers`, `schedulers` and `states` are
    `{name: ...}` dicts (see the module's docstring). Returns the checkpoint's path.
    """
    if not _is_step(step):
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    named = dict(models=_with(model, models, "model"), optimizers=_with(optimizer, optimizers, "optimizer"),
                 schedulers=_with(scheduler, schedulers, "scheduler"), states=states or {})
    return atomic_write_dir(directory, lambda tmp: _write_files(tmp, **named, step=step, extra=extra))


def find_checkpoint(directory) -> Path | None:
    """The complete checkpoint at `directory`, else the previous one kept by a save that crashed
    between its two renames, else None."""
    directory = Path(directory)
    if (directory / "meta.json").exists():
        return directory
    real = directory.resolve()                  # where atomic_write_dir put it aside (through a symlink too)
    previous = sorted(real.parent.glob(f".{real.name}.old-*"), key=os.path.getmtime)
    complete = [p for p in previous if (p / "meta.json").exists()]
    return complete[-1] if complete else None


def resumable_checkpoint(directory) -> Path:
    """The checkpoint to resume from (see `find_checkpoint`); raises `CheckpointError` when there is none, so
    that a resumed run never starts again from step 0 and overwrites a folder it could not read."""
    directory = Path(directory)
    found = find_checkpoint(directory)
    if found is not None:
        return found
    if directory.exists():
        raise CheckpointError(f"cannot resume: {directory} is not a complete checkpoint (meta.json is missing); "
                              "refusing to start again and overwrite it: move it away or train without resume")
    raise CheckpointError(f"cannot resume: no checkpoint at {directory}; train without resume to start afresh")


def _read_meta(directory: Path) -> dict:
    path = directory / "meta.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; {directory} is not a complete checkpoint")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("files"), dict):
        raise CheckpointError(f"{path}: not an archzoo checkpoint (expected format {FORMAT!r})")
    if not _is_step(meta.get("step")):
        raise CheckpointError(f"{path}: step must be an integer >= 0, got {meta.get('step')!r}")
    if not isinstance(meta.get("extra", {}), dict):
        raise CheckpointError(f"{path}: extra must be a JSON object, got {type(meta['extra']).__name__}")
    return meta


def _verify(directory: Path, meta: dict) -> None:
    for name, digest in meta["files"].items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
        if sha256(path) != digest:
            raise CheckpointError(f"{path}: SHA-256 does not match meta.json (truncated or corrupt)")


def _require(directory: Path, meta: dict, name: str, what: str) -> Path:
    if name not in meta["files"]:
        raise CheckpointError(f"{directory / name}: the checkpoint holds no {what} state")
    return directory / name


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt JSON ({e})") from e


def _load_tensors(path: Path, map_location) -> dict:
    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from e


def _what(kind: str, name: str) -> str:
    return kind if name == kind else f"{kind} {name!r}"


def _load_nested(directory: Path, meta: dict, stem: str, what: str, map_location):
    structure = _load_json(_require(directory, meta, f"{stem}.json", what))
    return _join_tensors(structure, _load_tensors(_require(directory, meta, f"{stem}.safetensors", what), map_location))


def _load_optimizer(directory: Path, meta: dict, name: str, optimizer: torch.optim.Optimizer, map_location) -> None:
    """Restore the optimizer `name`, after checking that the checkpoint was saved by the same kind of optimizer:
    its class in meta.json, or (older checkpoints) no hyperparameter that this optimizer does not know."""
    stem, what = _stem("optimizer", name), _what("optimizer", name)
    path = directory / f"{stem}.json"
    cls, saved = type(optimizer).__name__, meta.get("optimizers", {}).get(name, meta.get("optimizer"))
    if saved is not None and saved != cls:
        raise CheckpointError(f"{directory} was saved with the {what} {saved}, not {cls}: resume with {saved}")
    structure = _load_nested(directory, meta, stem, what, map_location)
    try:
        state = _optimizer_state(structure, optimizer)
        foreign = set().union(*map(set, state["param_groups"])) - set().union(*map(set, optimizer.param_groups))
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{path}: not an optimizer state ({type(e).__name__}: {e})") from e
    if foreign:
        raise CheckpointError(f"{path}: hyperparameters {sorted(foreign)} are unknown to {cls}: resume with the "
                              "optimizer the checkpoint was saved with")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: does not fit the optimizer {cls} ({e})") from e


def load_checkpoint(directory, *, model: torch.nn.Module | None = None, optimizer=None, scheduler=None,
                    map_location="cpu", models: dict | None = None, optimizers: dict | None = None,
                    schedulers: dict | None = None) -> dict:
    """Restore model, optimizer, scheduler and RNG states from `directory`; returns its meta
    (`step`, `extra`, `files`, and `states`: every saved state, {name: nested structure}).
    `models`, `optimizers`, `schedulers`: `{name: object}` dicts restored from their named files.
    Every file's checksum is verified first; nothing is unpickled.
    """
    directory = Path(directory)
    meta = _read_meta(directory)
    _verify(directory, meta)
    for name, m in _with(model, models, "model").items():
        file = f"{_stem('model', name)}.safetensors"
        try:
            load_model(m, str(_require(directory, meta, file, _what("model", name))), device=str(map_location))
        except (SafetensorError, RuntimeError) as e:
            raise CheckpointError(f"{directory / file}: does not fit the model ({e})") from e
    for name, opt in _with(optimizer, optimizers, "optimizer").items():
        _load_optimizer(directory, meta, name, opt, map_location)
    for name, sched in _with(scheduler, schedulers, "scheduler").items():
        sched.load_state_dict(_load_json(_require(directory, meta, f"{_stem('scheduler', name)}.json",
                                                  _what("scheduler", name))))
    states = [f.removeprefix("state.").removesuffix(".json") for f in meta["files"]
              if f.startswith("state.") and f.endswith(".json")]
    meta["states"] = {name: _load_nested(directory, meta, f"state.{name}", f"state {name!r}", map_location)
                      for name in states}
    _set_rng_state(_load_tensors(_require(directory, meta, "rng.safetensors", "RNG"), "cpu"),
                   _load_json(_require(directory, meta, "rng.json", "RNG")))
    return meta
