"""Datasets and generated tasks, behind one `load_dataset(name)`.

    load_dataset("digits")                       # ImageData: sklearn's 8x8 digits, always present
    load_dataset("fashion-mnist", data_dir=...)  # ImageData: --data-dir, Debian package, cache or download
    load_dataset("pydoc")                        # TextData: CPython's documentation, character level
    load_dataset("listops", length=1024)         # SequenceTask: generated, seeded
    load_dataset("path/to/file.txt")             # TextData from any UTF-8 text file
    load_dataset("path/to/folder")               # ImageData from folder/<class>/*.png
    load_image("astronaut", size=64)             # one scikit-image sample image, (C, H, W)

A dataset that is neither on disk nor downloadable raises `DatasetUnavailable` with instructions.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from .download import DatasetUnavailable, download
from .images import ImageData, first, load_cifar10, load_digits, load_idx_dataset, load_image_folder
from .samples import list_images, load_image
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

_TASK_NAMES = ("copy", "duplication", "associative_recall", "listops", "retrieval")


def list_datasets() -> list[str]:
    """The names `load_dataset` knows (besides paths to a text file or an image folder)."""
    return ["digits", "fashion-mnist", "mnist", "cifar10", "pydoc", *_TASK_NAMES]


def load_dataset(name: str | os.PathLike, data_dir: str | os.PathLike | None = None, **kw):
    """Load a dataset by name, or from a path: a text file gives TextData, a folder of class folders ImageData.

    `data_dir` is where image datasets are looked for first (`--data-dir`), and where a relative path
    is also looked for; names that need no files ignore it. Other keywords go to the loader:
    `test_size`/`seed` (digits), `val_fraction` (text), `length`/`n_train`/`n_test`/`seed` and the
    task's own (generated tasks), `img_size`/`in_chans`/`test_fraction`/`seed` (image folders).
    """
    name = str(name)
    if name == "digits":
        return load_digits(**kw)
    if name in ("fashion-mnist", "mnist"):
        return load_idx_dataset(name, data_dir, **kw)
    if name == "cifar10":
        return load_cifar10(data_dir, **kw)
    if name == "pydoc":
        return load_text("pydoc", **kw)
    if name in _TASK_NAMES:
        return load_task(name, **kw)
    for path in (Path(name), Path(data_dir) / name if data_dir else None):
        if path is not None and path.is_dir():
            return load_image_folder(path, **kw)
        if path is not None and path.is_file():
            return load_text(path, **kw)
    close = difflib.get_close_matches(name, list_datasets(), n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"unknown dataset {name!r}{hint} Known: {', '.join(list_datasets())}, or the path of a "
                     "text file or of an image folder (<folder>/<class>/*.png)")


__all__ = [
    "load_dataset", "list_datasets", "DatasetUnavailable", "ImageData", "first", "TextData", "SequenceTask",
    "CharTokenizer", "load_image", "list_images", "load_image_folder", "download", "load_text", "load_task",
    "evaluate_listops",
    "make_copy", "make_duplication", "make_associative_recall", "make_listops", "make_retrieval", "IGNORE_INDEX",
]
