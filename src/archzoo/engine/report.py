"""The report: `docs/results.md` and a static gallery `report/index.html`, built from `results/`.

    archzoo report          # = build_report()

Both pages hold a summary of all 64 papers (status, claims passed) and, for every registered claim,
its statement, criterion, run configuration, measured metrics, verdict and figure. Result files whose
claim is no longer registered are listed as stale. The output depends only on the registry and the
result files (sorted, no timestamps of its own), so an unchanged tree rebuilds byte for byte.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write
from ..registry import Claim, Paper, list_papers, repo_root, results_dir

MAX_LIST_ITEMS = 12         # longer metric lists are cut, with their length
CARD_METRICS = 6            # metrics shown on a gallery card


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
        rel = path.relative_to(results).as_posix()
        if slug not in by_slug:
            stale.append((rel, "unknown paper"))
        elif name not in by_slug[slug].claims:
            stale.append((rel, "claim no longer registered"))
        elif _read(path) is None:
            stale.append((rel, "unreadable JSON"))
    return entries, stale


def status(paper: Paper, entries: list[Entry]) -> str:
    """`Paper.status`, judged on the results read here (which may live outside `results_dir()`)."""
    if paper.status == "planned":
        return "planned"
    return "reproduced" if entries and all(e.verdict == "PASS" for e in entries) else "implemented"


def passed(entries: list[Entry]) -> str:
    return f"{sum(e.verdict == 'PASS' for e in entries)}/{len(entries)}"


# ----------------------------------------------------------------------------- formatting values


def fmt(value) -> str:
    """A metric value for a human: floats to 4 significant digits, long lists cut."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(fmt(v) for v in value[:MAX_LIST_ITEMS])
        return f"[{shown}{f', ... ({len(value)} values)' if len(value) > MAX_LIST_ITEMS else ''}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def flatten(metrics: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested metric dicts as (dotted key, formatted value) rows, in the claim's order."""
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        rows += flatten(value, name) if isinstance(value, dict) and value else [(name, fmt(value))]
    return rows


def run_summary(record: dict) -> str:
    """Mode, seeds, wall time, device, date and datasets of a run, on one line."""
    cfg = record.get("config") or {}
    parts = [f"{record.get('mode', '?')} run", f"{cfg.get('seeds', '?')} seed(s)",
             f"{record.get('wall_time_s', '?')} s on {record.get('device', '?')}", str(record.get("date", "?"))]
    if record.get("datasets"):
        parts.append("data: " + ", ".join(sorted(set(record["datasets"].values()))))
    return " · ".join(parts)


def config_summary(record: dict) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in (record.get("config") or {}).items())


def _changed(entry: Entry) -> bool:
    """Whether the record was written under another statement or criterion than the registered one."""
    r = entry.record or {}
    return (r.get("statement"), r.get("criterion")) != (entry.claim.statement, entry.claim.criterion)


# ----------------------------------------------------------------------------- markdown


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]


def _md_entry(e: Entry, docs_dir: Path) -> list[str]:
    lines = [f"### `{e.claim.name}` · {e.verdict}", "", f"**Statement:** {e.claim.statement}", "",
             f"**Criterion:** {e.claim.criterion}", ""]
    if e.record is None:
        return lines + [f"No committed result yet (`results/{e.paper.slug}/{e.claim.name}.json`).", ""]
    r = e.record
    lines += [f"**Run:** {run_summary(r)}", "", f"**Config:** `{config_summary(r)}`", ""]
    if r.get("mode") != "full":
        lines += ["**Note:** a quick run checks the pipeline; it is not evidence.", ""]
    if _changed(e):
        lines += ["**Note:** this result was recorded under another statement or criterion; re-run the claim.", ""]
    if r.get("notes"):
        lines += [f"**Notes:** {r['notes']}", ""]
    if metrics := flatten(r.get("metrics") or {}):
        lines += _md_table(["Metric", "Value"], [list(m) for m in metrics]) + [""]
    if e.figure is not None:
        link = Path(os.path.relpath(e.figure.resolve(), docs_dir)).as_posix()
        lines += [f"![{e.paper.slug}: {e.claim.name}]({link})", ""]
    return lines


def markdown(papers: list[Paper], entries: dict[str, list[Entry]], stale: list, docs_dir: Path) -> str:
    """The text of docs/results.md."""
    lines = ["# Results", "",
             "Generated by `archzoo report` from the committed evidence `results/<paper>/<claim>.json`; "
             "do not edit by hand.", ""]
    lines += _md_table(["Paper", "Title", "Year", "Family", "Status", "Claims passed"],
                       [[f"[{p.slug}](#{p.slug})" if entries[p.slug] else p.slug, p.title, p.year, p.family,
                         status(p, entries[p.slug]), passed(entries[p.slug])] for p in papers]) + [""]
    for p in papers:
        if not entries[p.slug]:
            continue
        link = f" · [arXiv:{p.arxiv}]({p.url})" if p.url else ""
        lines += [f"## {p.slug}", "", f"*{p.title}* ({p.year}){link}", "",
                  f"Status: **{status(p, entries[p.slug])}** · claims passed {passed(entries[p.slug])}", ""]
        for e in entries[p.slug]:
            lines += _md_entry(e, docs_dir)
    if stale:
        lines += ["## Stale results", "", "Result files that no registered claim reads:", ""]
        lines += [f"- `results/{path}`: {reason}" for path, reason in stale] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- html

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: .9rem; } td, th { border-bottom: 1px solid #ddd; padding: .25rem .5rem;
text-align: left; vertical-align: top; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1rem; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 1rem; }
.card h3 { margin: 0 0 .5rem; font-size: 1rem; } .card img { width: 100%; }
.card p { margin: .4rem 0; font-size: .9rem; } .run { color: #666; font-size: .8rem; }
.badge { display: inline-block; border-radius: 4px; padding: 0 .4rem; color: #fff; font-size: .8rem; }
.PASS, .reproduced { background: #2e7d32; } .FAIL { background: #c62828; } .implemented { background: #1565c0; }
.planned, .NOT-RUN { background: #9e9e9e; }
"""


def _badge(text: str) -> str:
    return f'<span class="badge {html.escape(text.replace(" ", "-"))}">{html.escape(text)}</span>'


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    """A table whose cells are already HTML."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>"


def _card(e: Entry, image: str | None) -> str:
    esc = html.escape
    parts = [f"<h3>{esc(e.paper.slug)} / {esc(e.claim.name)} {_badge(e.verdict)}</h3>"]
    if image is not None:
        parts.append(f'<img src="{esc(image)}" alt="{esc(e.paper.slug)}: {esc(e.claim.name)}">')
    parts += [f"<p><b>Statement:</b> {esc(e.claim.statement)}</p>",
              f"<p><b>Criterion:</b> {esc(e.claim.criterion)}</p>"]
    if e.record is not None:
        metrics = flatten(e.record.get("metrics") or {})
        if metrics:
            rows = [[esc(k), esc(v)] for k, v in metrics[:CARD_METRICS]]
            more = f'<p class="run">... and {len(metrics) - CARD_METRICS} more metrics</p>' \
                if len(metrics) > CARD_METRICS else ""
            parts.append(_html_table(["Metric", "Value"], rows) + more)
        parts.append(f'<p class="run">{esc(run_summary(e.record))}</p>')
    return '<div class="card">\n' + "\n".join(parts) + "\n</div>"


def html_page(papers: list[Paper], entries: dict[str, list[Entry]], stale: list, images: dict) -> str:
    """The text of report/index.html; `images` maps (slug, claim) to the image path relative to the page."""
    esc = html.escape
    summary = _html_table(["Paper", "Title", "Year", "Family", "Status", "Claims passed"],
                          [[esc(p.slug), esc(p.title), str(p.year), esc(p.family), _badge(status(p, entries[p.slug])),
                            passed(entries[p.slug])] for p in papers])
    cards = [_card(e, images.get((e.paper.slug, e.claim.name))) for p in papers for e in entries[p.slug]]
    cards = cards or ["<p>No claims registered yet.</p>"]
    body = ["<h1>archzoo: results</h1>",
            '<p class="sub">Every claim of the course with its verdict and figure; built by '
            "<code>archzoo report</code> from <code>results/</code>.</p>",
            "<h2>Claims</h2>", '<div class="cards">', *cards, "</div>",
            "<h2>Papers</h2>", summary]
    if stale:
        body += ["<h2>Stale results</h2>", "<ul>",
                 *[f"<li><code>results/{esc(path)}</code>: {esc(reason)}</li>" for path, reason in stale], "</ul>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>archzoo results</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def copy_images(entries: dict[str, list[Entry]], html_dir: Path) -> dict[tuple[str, str], str]:
    """Copy every figure to `html_dir/img/<slug>/<claim>.png` (and drop images no claim uses any more)."""
    images, wanted = {}, set()
    for e in (e for es in entries.values() for e in es if e.figure is not None):
        rel = f"img/{e.paper.slug}/{e.claim.name}.png"
        dest, data = html_dir / rel, e.figure.read_bytes()
        if not dest.is_file() or dest.read_bytes() != data:
            atomic_write(dest, lambda p, data=data: Path(p).write_bytes(data))
        images[(e.paper.slug, e.claim.name)] = rel
        wanted.add(dest)
    for old in (html_dir / "img").glob("*/*.png"):
        if old not in wanted:
            old.unlink()
    return images


# ----------------------------------------------------------------------------- entry point


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def build_report(results: str | os.PathLike | None = None, docs_path: str | os.PathLike | None = None,
                 html_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write `docs/results.md` and `report/index.html` (+ `report/img/`) from the result files; returns both paths.

    Defaults: `results_dir()`, `<checkout or cwd>/docs/results.md`, `<checkout or cwd>/report/`.
    """
    root = repo_root() or Path.cwd()
    results = Path(results) if results is not None else results_dir()
    docs_path = Path(docs_path) if docs_path is not None else root / "docs" / "results.md"
    html_dir = Path(html_dir) if html_dir is not None else root / "report"
    papers = list_papers()
    entries, stale = collect(results, papers)
    _write_text(docs_path, markdown(papers, entries, stale, docs_path.resolve().parent))
    images = copy_images(entries, html_dir)
    _write_text(html_dir / "index.html", html_page(papers, entries, stale, images))
    return docs_path, html_dir / "index.html"
