"""Where a piece of evidence came from: the code's git commit, the thread count and the machine's load.

`run_claim` records these beside each result, so that a number can be traced to the code that
produced it and read against how busy the machine was (a wall time measured under load 8 on 2 cores
is not comparable to one measured on an idle machine).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import torch


def git_state(root: str | os.PathLike | None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout at `root`: the HEAD commit and whether tracked or untracked files
    differ from it; (None, None) when `root` is None, not the top of a git checkout (a source tree unpacked
    inside another repository is not), or git is not installed."""
    if root is None:
        return None, None
    try:
        if Path(_git(root, "rev-parse", "--show-toplevel").strip()).resolve() != Path(root).resolve():
            return None, None
        return _git(root, "rev-parse", "HEAD").strip(), bool(_git(root, "status", "--porcelain").strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _git(root: str | os.PathLike, *args: str) -> str:
    return subprocess.run(["git", "-C", str(Path(root)), *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (`os.getloadavg`), or None where the system has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def provenance_start(root: str | os.PathLike | None) -> dict:
    """What a run records before it starts: commit, dirty tree, torch's thread count, machine load."""
    commit, dirty = git_state(root)
    return {"git_commit": commit, "git_dirty": dirty, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "load_avg_start": load_average()}
