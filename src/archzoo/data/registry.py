"""The dataset table behind `load_dataset(name)`, and where file-backed datasets are looked for on disk.

    register_dataset("digits", load_digits, kind="image", description="scikit-learn's 8x8 digits")
    register_dataset("fashion-mnist", load_fashion, kind="image", description="...", source=FileSource(...))

A dataset without a `source` needs no files (it ships with a package or is generated); its loader is
called as `loader(**kw)`. A dataset with a `source` is read from files: `locate` finds the folder that
holds them and its loader is called as `loader(folder, **kw)`. The folders searched, in order:

1. `data_dir` (`--data-dir`) and `data_dir/<name>`, when given;
2. `$ARCHZOO_DATA_DIR/<name>` when that variable is set, and nothing else: no system folder, no cache
   (point it at an empty folder to see what a fresh machine sees);
3. otherwise the source's system folders (Debian's `/usr/share/datasets/<name>`), then the cache
   `$XDG_CACHE_HOME/archzoo/<name>` (default `~/.cache`), where `archzoo data fetch` puts downloads.

Nothing here downloads: only `archzoo data fetch NAME` does (see `download.fetch`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..registry import table
from .download import DatasetUnavailable, cache_dir, find_dir

DATA_DIR_ENV = "ARCHZOO_DATA_DIR"


@dataclass(frozen=True)
class FileSource:
    """Where a dataset's files are found, and where `archzoo data fetch` gets them.

    `filesets`: alternatives, any complete one will do (gzipped or raw IDX files; CIFAR's batches or
    its archive); a file name may include a sub-folder. `files`: {file name: SHA-256} of what a
    fetch downloads from the first of `mirrors` (base URLs) that serves them. `how_to_get`: how
    to install it without archzoo, in a few words (a package), or "".
    """

    filesets: tuple[tuple[str, ...], ...]
    files: dict[str, str]
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    how_to_get: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """One entry of the dataset table: `kind` is what the loader returns ("image": ImageData, "text":
    TextData, "sequence": SequenceTask, or a kind of its own), `source` is None for datasets that need no files."""

    name: str
    loader: Callable
    kind: str
    description: str
    source: FileSource | None = None


_DATASETS = table("dataset")                     # name -> DatasetInfo


def register_dataset(name: str, loader: Callable, *, kind: str, description: str,
                     source: FileSource | None = None) -> Callable:
    """Add `name` to the table that `load_dataset` draws from; returns `loader` (usable as a decorator's body).

    Registering the same name twice with another loader raises `ValueError`: names are global.
    """
    if not name or not kind or not description:
        raise ValueError(f"register_dataset needs a name, a kind and a description, got {name!r}, {kind!r}, "
                         f"{description!r}")
    _DATASETS.add(name, DatasetInfo(name, loader, kind, description, source), same=lambda a, b: a.loader is b.loader)
    return loader


def registered(name: str) -> DatasetInfo | None:
    """The table entry of `name`, or None."""
    return _DATASETS.get(name)


def registered_names() -> list[str]:
    """The names in the table, in registration order."""
    return list(_DATASETS)


def search_dirs(name: str, source: FileSource, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders where the files of dataset `name` are looked for, in order (see the module docstring)."""
    dirs = [Path(data_dir), Path(data_dir) / name] if data_dir else []
    if root := os.environ.get(DATA_DIR_ENV):
        return [*dirs, Path(root) / name]
    return [*dirs, *map(Path, source.system_dirs), cache_dir(name)]


def fetch_dir(name: str) -> Path:
    """Where `archzoo data fetch NAME` writes: `$ARCHZOO_DATA_DIR/<name>` when set, else the cache."""
    root = os.environ.get(DATA_DIR_ENV)
    return Path(root) / name if root else cache_dir(name)


def find(name: str, source: FileSource, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first search folder that holds one complete file set of `name`, or None."""
    return find_dir(source.filesets, search_dirs(name, source, data_dir))


def how_to_get(name: str, source: FileSource) -> str:
    """One sentence: the ways to get the files of dataset `name`."""
    ways = [source.how_to_get] if source.how_to_get else []
    ways.append(f"`archzoo data fetch {name}` (downloads from {source.mirrors[0]}, SHA-256 checked)")
    ways.append(f"put {', '.join(source.filesets[0])} in a folder and pass --data-dir FOLDER")
    return "To get it: " + "; or ".join(ways)


def locate(name: str, source: FileSource, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds the files of `name` (see `find`); else `DatasetUnavailable` saying, in one line,
    where it looked and how to get them."""
    folder = find(name, source, data_dir)
    if folder is None:
        searched = ", ".join(map(str, search_dirs(name, source, data_dir)))
        raise DatasetUnavailable(f"{name} not found (looked in {searched}). {how_to_get(name, source)}")
    return folder
