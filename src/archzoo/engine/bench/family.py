"""`archzoo bench <family>`: one suite per family of papers whose benchmarks are their own (science, moe, ...).

A paper registers a *part* of its family's suite, `fn(opts) -> markdown`, with `register_family_bench`; the suite
runs every part of the family in name order and writes them as one section of `docs/benchmarks.md`:

    register_family_bench("science", "fno", bench_fno)     # in papers/fno/bench.py
    archzoo bench science                                  # runs fno's part beside the other science papers'

`opts` carries what every part needs: `quick` (tiny sizes, a smoke test), `device`, `repeats`, `warmup`.
A part measures with `bench_module` (the same warm-up, median and peak memory as every suite) and returns its
markdown (a `###` heading, a sentence on what is measured, `format_table(...)`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...registry import register_bench, table
from .markdown import default_benchmarks_path, load_note, load_now, write_section

_PARTS = table("family benchmark")               # "<family>/<name>" -> (family, name, fn)


@dataclass(frozen=True)
class BenchOptions:
    quick: bool
    device: torch.device
    repeats: int
    warmup: int


def register_family_bench(family: str, name: str, fn: Callable[[BenchOptions], str]) -> None:
    """Add `fn` as the part `name` of `archzoo bench <family>`; the first part of a family creates its suite."""
    key = f"{family}/{name}"
    _PARTS[key] = (family, name, fn)
    if family not in table("benchmark"):
        register_bench(family)(lambda args, family=family: run_family_bench(family, args))


def family_parts(family: str) -> list[tuple[str, Callable[[BenchOptions], str]]]:
    """(name, fn) of every registered part of `family`, in name order."""
    return sorted((name, fn) for fam, name, fn in _PARTS.values() if fam == family)


def run_family_bench(family: str, args) -> str:
    """Run every part of `family` (or those whose name matches `--pattern`) and write the family's section."""
    from fnmatch import fnmatch

    from ..runtime import resolve_device

    quick = bool(getattr(args, "quick", False))
    opts = BenchOptions(quick=quick, device=resolve_device(getattr(args, "device", "cpu") or "cpu"),
                        repeats=2 if quick else getattr(args, "repeats", 10),
                        warmup=1 if quick else getattr(args, "warmup", 3))
    pattern = getattr(args, "pattern", None) or "*"
    load = load_now()
    parts, chosen = [], [(name, fn) for name, fn in family_parts(family) if fnmatch(name, pattern)]
    for name, fn in chosen:
        print(f"[bench {family}] {name}", file=sys.stderr, flush=True)
        parts.append(fn(opts).strip())
    # a run limited by --pattern gets a section of its own, so that it does not replace the family's whole section
    partial = len(chosen) < len(family_parts(family))
    section = f"{family}-{re.sub(r'[^A-Za-z0-9_]+', '-', pattern)}" if partial else family
    markdown = "\n\n".join([
        f"## The {family} family: `{pattern}` only" if partial else f"## The {family} family",
        f"`archzoo bench {family}` on `{opts.device}` (torch {torch.__version__}, {torch.get_num_threads()} "
        f"thread(s)), median of {opts.repeats} steps after {opts.warmup} warm-up"
        f"{' (quick run)' if quick else ''}.{load_note(load)}",
        *parts,
    ])
    write_section(getattr(args, "out", None) or default_benchmarks_path(), section, markdown)
    print(markdown)
    return markdown
