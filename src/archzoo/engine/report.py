"""The report: `docs/papers.md`, `docs/results.md` and a static page `report/index.html`, built from `results/`.

    archzoo report          # = build_report()

- `docs/papers.md`: the 64 papers of the course by family, with title, year, arXiv link, status, page, and what
  each reproduces (its registered claims and their verdicts; for a planned paper, the course's target).
- `docs/results.md` and `report/index.html` (`report_html.py`): a summary of all 64 papers and, for every
  registered claim, its statement, criterion, run, metrics (with units; long series summarised, the figure
  shows them), verdict and figure. Result files whose claim is no longer registered are listed as stale.

The output depends only on the registry and the result files (sorted, no timestamps of its own), so an unchanged
tree rebuilds byte for byte.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..catalog import FAMILIES, FAMILY_TITLES, TO_REPRODUCE
from ..fileio import atomic_write
from ..registry import Claim, Paper, list_papers, repo_root, results_dir
from .report_values import duration, flatten, fmt

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


# ----------------------------------------------------------------------------- markdown


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]


def _md_family_table(s: Summary, link) -> list[str]:
    rows = [[link(f), FAMILY_TITLES[f], c["papers"], c["reproduced"], c["implemented"], c["planned"],
             f"{c['passed']}/{c['claims']}"] for f, c in s.families.items()]
    return _md_table(["Family", "Topic", "Papers", "Reproduced", "Implemented", "Planned", "Claims passed"], rows)


def _md_paper_line(p: Paper, st: str, docs_dir: Path) -> str:
    parts = [f"**{p.title}** ({p.year})", f"[arXiv:{p.arxiv}]({p.url})" if p.url else "no arXiv id", f"**{st}**"]
    if page := paper_page(p.slug):
        parts.append(f"[paper page]({rel(page, docs_dir)})")
    return " · ".join(parts)


def _md_entry(e: Entry, docs_dir: Path) -> list[str]:
    lines = [f"### `{e.claim.name}` · {e.label}", "", f"**Statement:** {e.claim.statement}", "",
             f"**Criterion:** {e.claim.criterion}", ""]
    if e.record is None:
        return lines + [f"No committed result yet (`results/{e.paper.slug}/{e.claim.name}.json`).", ""]
    r = e.record
    lines += [f"**Run:** {run_summary(e)}", "", f"**Config:** `{config_summary(r)}`", ""]
    for note in warnings(e):
        lines += [f"**Note:** {note}.", ""]
    if r.get("notes"):
        lines += [f"**Notes:** {r['notes']}", ""]
    if metrics := flatten(r.get("metrics") or {}):
        lines += _md_table(["Metric", "Value"], [[m.key, m.value] for m in metrics]) + [""]
    if e.figure is not None:
        lines += [f"![{e.paper.slug}: {e.claim.name}]({rel(e.figure, docs_dir)})", ""]
    return lines


def results_markdown(papers: list[Paper], entries: dict[str, list[Entry]], stale: list, docs_dir: Path) -> str:
    """The text of docs/results.md."""
    lines = ["# Results", "",
             "Generated by `archzoo report` from the committed evidence `results/<paper>/<claim>.json`; "
             "do not edit by hand. The course's papers and what each reproduces: [papers.md](papers.md).", "",
             Summary.of(papers, entries).line() + ".", ""]
    lines += _md_table(["Paper", "Title", "Year", "Family", "Status", "Claims passed"],
                       [[f"[{p.slug}](#{p.slug})" if entries[p.slug] else p.slug, p.title, p.year, p.family,
                         status(p, entries[p.slug]), passed(entries[p.slug])] for p in papers]) + [""]
    for p in papers:
        if not entries[p.slug]:
            continue
        lines += [f"## {p.slug}", "", _md_paper_line(p, status(p, entries[p.slug]), docs_dir), "",
                  f"Claims passed {passed(entries[p.slug])}", ""]
        for e in entries[p.slug]:
            lines += _md_entry(e, docs_dir)
    if stale:
        lines += ["## Stale results", "", "Result files that no registered claim reads:", ""]
        lines += [f"- `results/{path}`: {reason}" for path, reason in stale] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def papers_markdown(papers: list[Paper], entries: dict[str, list[Entry]], docs_dir: Path) -> str:
    """The text of docs/papers.md: every paper of the course by family, and what it reproduces."""
    s = Summary.of(papers, entries)
    lines = ["# The papers", "",
             "The course's papers, by family. Generated by `archzoo report` from `src/archzoo/catalog.py`, the "
             "registered claims and their committed evidence in `results/`; do not edit by hand.", "",
             "Status: **planned** (metadata only), **implemented** (models and layers registered and tested), "
             "**reproduced** (every claim has committed evidence that passed). The measured numbers and figures "
             "are in [results.md](results.md).", "", s.line() + ".", ""]
    lines += _md_family_table(s, lambda f: f"[{f}](#{f})") + [""]
    for family in FAMILIES:
        lines += [f"## {family}", "", f"*{FAMILY_TITLES[family]}*", ""]
        for p in (p for p in papers if p.family == family):
            es = entries[p.slug]
            lines += [f"### {p.slug}", "", _md_paper_line(p, status(p, es), docs_dir), "", p.summary, ""]
            if es:
                lines += [f"Reproduces ({passed(es)} claims passed):", ""]
                lines += [f"- **{e.label}** `{e.claim.name}`: {e.claim.statement}" for e in es] + [""]
            elif p.status == "planned":
                lines += [f"To reproduce: {TO_REPRODUCE.get(p.slug, 'not described yet.')}", ""]
            else:
                lines += ["No claims registered yet.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- entry point


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def build_report(results: str | os.PathLike | None = None, docs_path: str | os.PathLike | None = None,
                 html_dir: str | os.PathLike | None = None) -> tuple[Path, Path, Path]:
    """Write `docs/results.md`, `docs/papers.md` (beside it) and `report/index.html` (+ `report/img/`) from the
    result files; returns the three paths.

    Defaults: `results_dir()`, `<checkout or cwd>/docs/results.md`, `<checkout or cwd>/report/`.
    """
    from .report_html import copy_images, html_page  # here, since report_html imports this module

    root = repo_root() or Path.cwd()
    results = Path(results) if results is not None else results_dir()
    docs_path = Path(docs_path) if docs_path is not None else root / "docs" / "results.md"
    html_dir = Path(html_dir) if html_dir is not None else root / "report"
    papers = list_papers()
    entries, stale = collect(results, papers)
    papers_path = docs_path.with_name("papers.md")
    _write_text(docs_path, results_markdown(papers, entries, stale, docs_path.parent))
    _write_text(papers_path, papers_markdown(papers, entries, docs_path.parent))
    images = copy_images(entries, html_dir)
    links = {"papers": papers_path, "results": docs_path, "readme": root / "README.md",
             "benchmarks": docs_path.with_name("benchmarks.md")}
    _write_text(html_dir / "index.html", html_page(papers, entries, stale, images, links, html_dir))
    return docs_path, papers_path, html_dir / "index.html"
