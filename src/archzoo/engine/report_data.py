"""The records behind the report: each claim's committed evidence (`Entry`), a paper's status and the summary
counts, and the short texts (run, warnings, configuration) that both the markdown and the HTML page show."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..catalog import FAMILIES
from ..registry import Claim, Paper
from .report_values import duration, fmt

PAPERS_DIR = Path(__file__).resolve().parents[1] / "papers"    # src/archzoo/papers/<slug>/README.md
STATUSES = ("reproduced", "implemented", "planned")


@dataclass
class Entry:
    """A registered claim and its committed record (None when it has not been run)."""

    paper: Paper
    claim: Claim
    record: dict | None
    figure: Path | None     # results/<slug>/<claim>.png when it exists

    @property
    def verdict(self) -> str:
        if self.record is None:
            return "NOT RUN"
        return "PASS" if self.record.get("passed") is True else "FAIL"

    @property
    def substitutes(self) -> dict[str, str]:
        """{data set the claim asked for: the one it ran on instead}: the record's `substitutes` where it has
        one, else every entry of `datasets` whose loaded name differs from the requested one."""
        r = self.record or {}
        if isinstance(r.get("substitutes"), dict):
            subs = r["substitutes"]
        else:
            used = r.get("datasets") if isinstance(r.get("datasets"), dict) else {}
            subs = {k: v for k, v in used.items() if k != v}
        return {str(k): str(v) for k, v in subs.items()}

    @property
    def label(self) -> str:
        """The verdict, with the data it ran on when that was a substitute: `PASS (on digits)`."""
        subs = self.substitutes
        return f"{self.verdict} (on {', '.join(sorted(set(subs.values())))})" if subs else self.verdict


def paper_page(slug: str) -> Path | None:
    page = PAPERS_DIR / slug / "README.md"
    return page if page.is_file() else None


def rel(target: Path, base: Path) -> str:
    """`target` as a link relative to the directory `base`."""
    return Path(os.path.relpath(Path(target).resolve(), Path(base).resolve())).as_posix()


# ----------------------------------------------------------------------------- reading results


def _read(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def collect(results: Path, papers: list[Paper]) -> tuple[dict[str, list[Entry]], list[tuple[str, str]]]:
    """Entries per paper slug (claims sorted by name) and the stale result files as (path, reason)."""
    by_slug = {p.slug: p for p in papers}
    entries = {}
    for paper in papers:
        entries[paper.slug] = []
        for name in sorted(paper.claims):
            json_path = results / paper.slug / f"{name}.json"
            record = _read(json_path) if json_path.exists() else None
            figure = results / paper.slug / ((record or {}).get("figure") or f"{name}.png")
            entries[paper.slug].append(Entry(paper, paper.claims[name], record, figure if figure.is_file() else None))
    stale = []
    for path in sorted(results.glob("*/*.json")):
        slug, name = path.parent.name, path.stem
        rel_path = path.relative_to(results).as_posix()
        if slug not in by_slug:
            stale.append((rel_path, "unknown paper"))
        elif name not in by_slug[slug].claims:
            stale.append((rel_path, "claim no longer registered"))
        elif _read(path) is None:
            stale.append((rel_path, "unreadable JSON"))
    return entries, stale


def status(paper: Paper, entries: list[Entry]) -> str:
    """`Paper.status`, judged on the results read here (which may live outside `results_dir()`)."""
    if paper.status == "planned":
        return "planned"
    return "reproduced" if entries and all(e.verdict == "PASS" for e in entries) else "implemented"


def passed(entries: list[Entry]) -> str:
    return f"{sum(e.verdict == 'PASS' for e in entries)}/{len(entries)}"


@dataclass
class Summary:
    """Counts for the top of every page: papers by status, overall and per family, and claims by verdict."""

    papers: Counter            # status -> number of papers
    families: dict             # family -> Counter of status (+ "papers", "claims", "passed")
    verdicts: Counter          # PASS / FAIL / NOT RUN -> number of claims

    @classmethod
    def of(cls, papers: list[Paper], entries: dict[str, list[Entry]]) -> Summary:
        families = {f: Counter() for f in FAMILIES}
        verdicts = Counter()
        for p in papers:
            fam = families[p.family]
            fam[status(p, entries[p.slug])] += 1
            fam["papers"] += 1
            fam["claims"] += len(entries[p.slug])
            fam["passed"] += sum(e.verdict == "PASS" for e in entries[p.slug])
            verdicts.update(e.verdict for e in entries[p.slug])
        return cls(Counter(status(p, entries[p.slug]) for p in papers), families, verdicts)

    @property
    def claims(self) -> int:
        return sum(self.verdicts.values())

    def line(self) -> str:
        n = sum(self.papers.values())
        return (f"{n} papers: {self.papers['reproduced']} reproduced, {self.papers['implemented']} implemented, "
                f"{self.papers['planned']} planned; claims passed {self.verdicts['PASS']}/{self.claims} "
                f"({self.verdicts['FAIL']} failed, {self.verdicts['NOT RUN']} not run)")


def run_summary(e: Entry) -> str:
    """Mode, seeds, wall time, device, date, commit and data of a run, on one line."""
    r = e.record or {}
    seeds = (r.get("config") or {}).get("seeds", "?")
    parts = [f"{r.get('mode', '?')} run", f"{seeds} seed{'' if seeds == 1 else 's'}",
             f"{duration(r.get('wall_time_s'))} on {r.get('device', '?')}", str(r.get("date", "?"))[:10]]
    if isinstance(r.get("commit"), str):
        parts.append(f"commit {r['commit'][:10]}{' (dirty tree)' if r.get('dirty') is True else ''}")
    datasets, subs = r.get("datasets") if isinstance(r.get("datasets"), dict) else {}, e.substitutes
    if datasets or subs:
        parts.append("data: " + ", ".join(sorted(f"{v} (substitute for {k})" if k in subs else str(v)
                                                 for k, v in {**datasets, **subs}.items())))
    return " · ".join(parts)


def warnings(e: Entry) -> list[str]:
    """What a reader must know before trusting a record: substitute data, a quick run, a changed criterion."""
    r, notes = e.record or {}, []
    if e.substitutes:
        used = ", ".join(f"{v} instead of {k}" for k, v in sorted(e.substitutes.items()))
        notes.append(f"ran on a substitute data set ({used}): not evidence for the paper's own data")
    if r and r.get("mode") != "full":
        notes.append("a quick run checks the pipeline; it is not evidence")
    if r and (r.get("statement"), r.get("criterion")) != (e.claim.statement, e.claim.criterion):
        notes.append("this result was recorded under another statement or criterion; re-run the claim")
    return notes


def config_summary(record: dict) -> str:
    cfg = record.get("config") or {}
    return ", ".join(f"{k}=[{fmt(v)}]" if isinstance(v, list) else f"{k}={fmt(v)}" for k, v in cfg.items())
