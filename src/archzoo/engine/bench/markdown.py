"""Writing benchmark tables: markdown tables and the owned sections of `docs/benchmarks.md`."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from ...fileio import atomic_write
from ...registry import repo_root


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A markdown table of `rows` with `columns`; a failed row shows its error where values are missing."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row[c]) if c in row else _cell(row.get("error", "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_note(start: float) -> str:
    """How busy the machine was: the 1-minute load average at the start of a suite (`start`) and now."""
    if not hasattr(os, "getloadavg"):
        return ""
    return (f" Machine load average {start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end "
            f"({os.cpu_count()} cores): times measured on a busy machine are inflated, ratios measured back to "
            "back less so.")


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def bench_dtype(name: str | None) -> torch.dtype:
    """The dtype named by `archzoo bench --dtype` (None: float32)."""
    if name is None:
        return torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def setting_suffix(device: torch.device, dtype: torch.dtype) -> str:
    """The section-name suffix of a run off the CPU or in another dtype ("-cuda-bfloat16"); "" for CPU float32,
    so that a GPU run gets a section of its own beside the CPU one."""
    parts = ([] if device.type == "cpu" else [device.type]) + ([] if dtype == torch.float32 else
                                                                [str(dtype).removeprefix("torch.")])
    return "".join(f"-{p}" for p in parts)


def setting_flags(device: torch.device, dtype: torch.dtype) -> str:
    """The command-line flags of that setting (" --device cuda --dtype bfloat16"); "" for CPU float32."""
    if not setting_suffix(device, dtype):
        return ""
    return f" --device {device.type} --dtype {str(dtype).removeprefix('torch.')}"


def setting_title(device: torch.device, dtype: torch.dtype) -> str:
    """The same, for the section's title (": cuda, bfloat16"); "" for CPU float32."""
    return f": {device.type}, {str(dtype).removeprefix('torch.')}" if setting_suffix(device, dtype) else ""


def load_now() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def default_benchmarks_path() -> Path:
    """`<checkout>/docs/benchmarks.md`, else `./docs/benchmarks.md`."""
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "docs" / "benchmarks.md"


BENCHMARKS_HEADER = """# Benchmarks

Written by `archzoo bench <suite>`: each section is replaced by the suite that owns it. Times are the
median of forward+backward steps after warm-up; memory is the peak allocated by one step beyond its
inputs and parameters (see `archzoo.engine.bench`).
"""


def write_section(path: str | os.PathLike, name: str, markdown: str) -> Path:
    """Write `markdown` between `<!-- bench:name -->` and `<!-- /bench:name -->` in `path`, atomically.

    An existing section is replaced in place, others are kept; a new one is appended; a missing file
    is created with a title.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else BENCHMARKS_HEADER
    block = f"<!-- bench:{name} -->\n{markdown.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write(path, lambda p: Path(p).write_text(text))
    return path
