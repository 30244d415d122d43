"""Checked downloads and the search for dataset files on disk.

A dataset file is looked for, in order, in the user's `--data-dir`, in system
folders (Debian's `/usr/share/datasets/...`), and in the cache
`~/.cache/archzoo/<name>`; only then is it downloaded into the cache, and every
download is verified against its published SHA-256 before it is kept.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..fileio import public_mode


class DatasetUnavailable(RuntimeError):
    """A dataset is neither on disk nor downloadable; the message says how to get it."""


def cache_dir(name: str) -> Path:
    """Where downloads of dataset `name` are kept: `$XDG_CACHE_HOME/archzoo/<name>` (default `~/.cache`)."""
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "archzoo" / name


def download(url: str, dest: str | os.PathLike, sha256: str, *, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` and check its SHA-256; return `dest`.

    The bytes are streamed into a temporary file beside `dest`, hashed on the way, and renamed onto
    `dest` only when the digest matches, so `dest` is either complete and verified or absent. Any URL
    that `urllib` opens works, `file://` included. A wrong digest raises `ValueError` naming both.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256.lower():
            raise ValueError(f"checksum mismatch for {url}: expected SHA-256 {sha256.lower()}, "
                             f"received {digest.hexdigest()}")
        os.chmod(tmp, public_mode())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def find_dir(filesets: Iterable[Sequence[str]], dirs: Iterable[str | os.PathLike | None]) -> Path | None:
    """The first of `dirs` that holds every file of one of `filesets` (alternatives such as .gz or raw)."""
    for d in dirs:
        if d is not None and Path(d).is_dir() and any(all((Path(d) / f).is_file() for f in fs) for fs in filesets):
            return Path(d)
    return None


def fetch(name: str, files: dict[str, str], mirrors: Sequence[str]) -> Path:
    """Download `files` ({filename: sha256}) from the first mirror that serves them into `cache_dir(name)`.

    Files already in the cache are kept. Returns the cache folder; when no mirror delivers every file, raises
    the last mirror's error (`OSError`, `http.client.HTTPException` or a checksum `ValueError`).
    """
    folder = cache_dir(name)
    error: Exception | None = None
    for base in mirrors:
        try:
            for filename, sha256 in files.items():
                if not (folder / filename).is_file():
                    print(f"[archzoo] downloading {base}{filename}", file=sys.stderr)
                    download(base + filename, folder / filename, sha256)
            return folder
        except (OSError, ValueError, http.client.HTTPException) as e:
            error = e
    assert error is not None, "fetch needs at least one mirror"
    raise error
