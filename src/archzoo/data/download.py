"""Checked downloads, and the search for dataset files on disk.

Nothing in archzoo downloads while it runs: loading a dataset only reads files
(see `registry.locate` for where). `fetch` is called by one command only,
`archzoo data fetch NAME`, and verifies every file against its published
SHA-256 before it keeps it.
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


def fetch(files: dict[str, str], mirrors: Sequence[str], folder: str | os.PathLike) -> Path:
    """Download `files` ({filename: sha256}) from the first mirror that serves them all into `folder`.

    Files already there are kept; each URL is printed before it is fetched. Returns `folder`; when no
    mirror delivers every file, raises the last mirror's error (`OSError`, `http.client.HTTPException`
    or a checksum `ValueError`).
    """
    if not mirrors:
        raise ValueError("fetch needs at least one mirror")
    folder = Path(folder)
    error: Exception | None = None
    for base in mirrors:
        try:
            for filename, sha256 in files.items():
                if not (folder / filename).is_file():
                    print(f"[archzoo] downloading {base}{filename} -> {folder / filename}", file=sys.stderr)
                    download(base + filename, folder / filename, sha256)
            return folder
        except (OSError, ValueError, http.client.HTTPException) as e:
            error = e
    raise error
