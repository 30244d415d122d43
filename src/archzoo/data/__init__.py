"""Datasets and generated tasks, behind one `load_dataset(name)` and one table (`register_dataset`).

    load_dataset("digits")                       # ImageData: sklearn's 8x8 digits, always present
    load_dataset("fashion-mnist", data_dir=...)  # ImageData: --data-dir, $ARCHZOO_DATA_DIR, Debian package, cache
    load_dataset("pydoc")                        # TextData: CPython's documentation, character level
    load_dataset("listops", length=1024)         # SequenceTask: generated, seeded
    load_dataset("path/to/file.txt")             # TextData from any UTF-8 text file
    load_dataset("path/to/folder")               # ImageData from folder/<class>/*.png
    load_image("astronaut", size=64)             # one scikit-image sample image, (C, H, W)
    register_dataset("scenes", make_scenes, kind="scenes", description="...")   # add a dataset to the table

Nothing is downloaded at run time. Datasets read from files (fashion-mnist, mnist, cifar10) are looked
for in `--data-dir`, then in Debian's `/usr/share/datasets/<name>` (Fashion-MNIST: the package
`dataset-fashion-mnist`, which `make data` installs), then in the cache `~/.cache/archzoo/<name>`, where
the one command that downloads, `archzoo data fetch NAME`, puts them (SHA-256 checked). When the
environment variable `ARCHZOO_DATA_DIR` is set, `$ARCHZOO_DATA_DIR/<name>` replaces the Debian folder and
the cache: the loaders look there only (besides an explicit `--data-dir`), so
`ARCHZOO_DATA_DIR=$(mktemp -d)` shows what a fresh machine sees. A dataset that is not found raises
`DatasetUnavailable`, whose one-line message says where it looked and how to get it. A data file that
is not what it should be (truncated, garbage, labels out of range) raises `ValueError` naming it.
"""

from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path

from .download import DatasetUnavailable, download, fetch
from .images import ImageData, first, load_image_folder
from .registry import (
    DATA_DIR_ENV,
    DatasetInfo,
    FileSource,
    fetch_dir,
    find,
    how_to_get,
    locate,
    register_dataset,
    registered,
    registered_names,
    search_dirs,
)
from .samples import list_images, load_image
from .scenes import SceneData, ShapeScenes, load_scenes, make_scenes
from .spirals import Spirals, make_spirals
from .tasks import (
    IGNORE_INDEX,
    SequenceTask,
    evaluate_listops,
    load_task,
    make_associative_recall,
    make_copy,
    make_duplication,
    make_listops,
    make_retrieval,
)
from .text import CharTokenizer, TextData, load_text


def _load_papers() -> None:
    """Papers register their own datasets when imported; the registry imports them all once."""
    from ..registry import _load_papers

    _load_papers()


def list_datasets() -> list[str]:
    """The names `load_dataset` knows (besides paths to a text file or an image folder), papers' included."""
    _load_papers()
    return registered_names()


def dataset_info(name: str) -> DatasetInfo:
    """The table entry of dataset `name` (loader, kind, description, file source); unknown names raise ValueError."""
    info = registered(name)
    if info is None:
        _load_papers()
        info = registered(name)
    if info is None:
        raise _unknown(name)
    return info


def fetch_dataset(name: str) -> Path:
    """Download the files of dataset `name` with SHA-256 checks into `$ARCHZOO_DATA_DIR/<name>`, else the cache
    `~/.cache/archzoo/<name>`; return that folder. The only place archzoo downloads (`archzoo data fetch NAME`)."""
    info = dataset_info(name)
    if info.source is None:
        raise ValueError(f"dataset {name!r} needs no files: it ships with a package or is generated")
    return fetch(info.source.files, info.source.mirrors, fetch_dir(name))


def load_dataset(name: str | os.PathLike, data_dir: str | os.PathLike | None = None, **kw):
    """Load a registered dataset by name, or from a path: a text file gives TextData, a folder of class folders
    ImageData.

    `data_dir` is where file-backed datasets are looked for first (`--data-dir`), and where a relative
    path is also looked for; names that need no files ignore it. Other keywords go to the loader:
    `test_size`/`seed` (digits), `val_fraction` (text), `length`/`n_train`/`n_test`/`seed` and the
    task's own (generated tasks), `img_size`/`in_chans`/`test_fraction`/`seed` (image folders).
    """
    name = str(name)
    info = registered(name)
    if info is None:
        for path in (Path(name), Path(data_dir) / name if data_dir else None):
            if path is not None and path.is_dir():
                return load_image_folder(path, **kw)
            if path is not None and path.is_file():
                return load_text(path, **kw)
        info = dataset_info(name)
    _check_options(info, kw)
    if info.source is None:
        return info.loader(**kw)
    return info.loader(locate(name, info.source, data_dir), **kw)


def _check_options(info: DatasetInfo, kw: dict) -> None:
    """Options the loader does not take raise one ValueError naming those it does (not a TypeError from deep inside)."""
    params = inspect.signature(info.loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return                                             # the loader checks its own (generated tasks)
    takes = [k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    takes = takes[1:] if info.source is not None else takes  # the first is the folder that `locate` finds
    unknown = sorted(set(kw) - set(takes))
    if unknown:
        raise ValueError(f"dataset {info.name!r} takes no option(s) {unknown}; it takes {takes or 'none'}")


def _unknown(name: str) -> ValueError:
    known = registered_names()
    if os.sep in name or Path(name).suffix:
        return ValueError(f"{name}: no such file or folder (a dataset path must be a text file or an image folder "
                          f"<folder>/<class>/*.png); the named datasets are {', '.join(known)}")
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    return ValueError(f"unknown dataset {name!r}{hint}. Known: {', '.join(known)}, or the path of a text file or "
                      "of an image folder (<folder>/<class>/*.png)")


__all__ = [
    "load_dataset", "list_datasets", "dataset_info", "register_dataset", "DatasetInfo", "FileSource", "DATA_DIR_ENV",
    "find", "locate", "search_dirs", "how_to_get", "fetch_dataset",
    "DatasetUnavailable", "ImageData", "first", "TextData", "SequenceTask",
    "CharTokenizer", "load_image", "list_images", "load_image_folder", "download", "load_text", "load_task",
    "evaluate_listops",
    "make_copy", "make_duplication", "make_associative_recall", "make_listops", "make_retrieval", "IGNORE_INDEX",
    "make_scenes", "load_scenes", "ShapeScenes", "SceneData", "Spirals", "make_spirals",
]
