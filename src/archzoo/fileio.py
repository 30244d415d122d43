"""Atomic writes: files and folders are written beside their target, then renamed into place, so readers never
see half a file, or a folder whose files come from two different saves."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def public_mode(directory: bool = False) -> int:
    """The mode an ordinary `open()` / `mkdir()` would give under the current umask (temp files get 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)`, then move the finished file onto `path`; on failure nothing is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, public_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def replaceable_dir(path: str | os.PathLike) -> Path:
    """The real folder (through symlinks) that `atomic_write_dir(path)` would replace; a ValueError where `path`
    is a file, or the working directory or a folder holding it (renaming it would move the process's cwd)."""
    real = Path(path).resolve()
    if real.exists() and not real.is_dir():
        raise ValueError(f"{path} exists and is not a folder")
    if real == Path.cwd() or real in Path.cwd().parents:
        raise ValueError(f"{path} is the working directory or holds it, so it cannot be replaced: "
                         "write into a folder of its own")
    return real


def atomic_write_dir(path: str | os.PathLike, write: Callable[[Path], object], *, keep_others: bool = False) -> Path:
    """Call `write(tmp_dir)` on an empty folder beside `path`, then put that folder in place of `path`.

    The finished folder is renamed onto `path`; a folder already there is first renamed aside to
    `.<name>.old-*` and removed at the end, so a crash between the two renames leaves it complete there
    (`engine.checkpoint.find_checkpoint` looks for it). On any failure before the renames `path` is untouched
    and the temporary folder is removed.

    `keep_others=True` carries the entries of the old folder that `write` did not create (a user's notes, a
    training run's logs) into the new one, each by a rename on the same file system (nothing is copied); a
    crash while carrying them leaves the rest in the `.<name>.old-*` folder beside `path`.
    """
    given, path = Path(path), replaceable_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    old = None
    try:
        write(tmp)
        for p in tmp.iterdir():
            if p.is_file():
                os.chmod(p, public_mode())      # writers that use temp files of their own leave 0600
            fsync(p)
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if path.exists() else public_mode(directory=True))
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            os.replace(path, old)               # an empty directory is replaced by the rename
        os.replace(tmp, path)
        if old is not None and keep_others:
            for entry in sorted(old.iterdir()):
                if not (path / entry.name).exists():
                    os.replace(entry, path / entry.name)
        fsync(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return given
