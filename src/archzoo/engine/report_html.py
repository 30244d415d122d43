"""`report/index.html`: the report as one static page that reads on a desktop and on a phone.

A summary (papers by status and family, claims passed, links), a navigation by family, one table row per paper
(linked to its arXiv page and its page in the repository), then every built paper's claims: verdict, statement,
criterion, figure (full width where it is wide; a click opens the PNG), metrics with units and the run. Figures
are copied to `report/img/` so the folder stands alone; the other links are relative to the checkout. Every text
goes through `html.escape`.
"""

from __future__ import annotations

import re
import struct
from html import escape as esc
from pathlib import Path

from ..catalog import FAMILIES, FAMILY_TITLES, TO_REPRODUCE
from ..fileio import atomic_write
from ..registry import Paper
from .report_data import (
    STATUSES,
    Entry,
    Summary,
    config_summary,
    paper_page,
    passed,
    rel,
    run_summary,
    status,
    warnings,
)
from .report_values import flatten

WIDE_FIGURE = 800           # px: a wider figure takes the whole content width, a narrower one sits beside its metrics
OPEN_METRICS = 24           # a claim's main metrics table starts folded when it has more rows

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.wrap { max-width: 1200px; margin: 0 auto; padding: 0 1rem; } main.wrap { padding-bottom: 3rem; }
a { color: #0969da; } h1 { margin: 1.2rem 0 .2rem; } h2 { margin-top: 2.2rem; } .sub, .muted { color: var(--muted); }
ul.links { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; }
nav.families { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
  padding: .45rem 0; overflow-x: auto; white-space: nowrap; }
nav.families a { margin-right: 1rem; text-decoration: none; font-weight: 600; }
section, article, .claim { scroll-margin-top: 3rem; }
.stats { display: flex; flex-wrap: wrap; gap: .6rem; margin: 1rem 0; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: .4rem .9rem; background: var(--soft); }
.stat b { display: block; font-size: 1.5rem; line-height: 1.3; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: .9rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--soft); } td.n, th.n { text-align: right; }
table.papers { width: 100%; min-width: 720px; } table.papers td:first-child { width: 38%; min-width: 14rem; }
table.papers th:nth-child(2) { width: 3.5rem; } table.papers th:nth-child(3) { width: 7.5rem; }
table.papers th:nth-child(4) { width: 5.5rem; }
table.metrics td:first-child { overflow-wrap: break-word; min-width: 9rem; }
table.metrics td:last-child { min-width: 9rem; }
.badge { display: inline-block; border-radius: 4px; padding: 0 .4rem; color: #fff; font-size: .8rem;
  font-weight: 600; white-space: nowrap; vertical-align: middle; }
.PASS, .reproduced { background: #1a7f37; } .FAIL { background: #cf222e; } .implemented { background: #0969da; }
.planned, .NOT-RUN { background: #6e7781; } .sub-data { background: #9a6700; }
article.paper { border-top: 2px solid var(--line); margin-top: 2rem; }
article.paper h3 { margin: .8rem 0 .2rem; font-size: 1.25rem; }
.claim { border: 1px solid var(--line); border-radius: 8px; padding: .8rem 1rem; margin: 1rem 0; }
.claim h4 { margin: 0 0 .4rem; font-size: 1.05rem; } .claim p { margin: .35rem 0; }
figure { margin: .6rem 0; } figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: var(--muted); font-size: .8rem; }
.evidence.narrow { display: grid; grid-template-columns: auto minmax(0, 1fr); gap: 1.2rem; align-items: start; }
.note { background: #fff8c5; border-left: 4px solid #d4a72c; padding: .25rem .6rem; }
details { margin: .4rem 0; } summary { cursor: pointer; color: var(--muted); }
.run { color: var(--muted); font-size: .85rem; } .nw { white-space: nowrap; }
@media (max-width: 900px) { .evidence.narrow { display: block; } }
@media (max-width: 600px) { body { font-size: 15px; } .wrap { padding: 0 .6rem; }
  .stats { display: grid; grid-template-columns: 1fr 1fr; } .stat.claims { grid-column: span 2; }
  th, td { padding: .25rem .35rem; } table { font-size: .85rem; } .topic { display: none; }
  .claim { padding: .6rem; } h1 { font-size: 1.6rem; } }
"""


def _badge(text: str, kind: str | None = None) -> str:
    return f'<span class="badge {esc((kind or text).replace(" ", "-"))}">{esc(text)}</span>'


def _verdict(e: Entry) -> str:
    on = f"on {', '.join(sorted(set(e.substitutes.values())))}"
    return _badge(e.verdict) + (" " + _badge(on, "sub-data") if e.substitutes and e.record else "")


def _a(href: str, text: str) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def _table(header: list[str], rows: list[list[str]], cls: str = "", numeric: frozenset = frozenset(),
           row_attrs: list[str] | None = None) -> str:
    """A table whose cells are already HTML, in a box that scrolls sideways on a narrow screen."""
    def td(i, c, tag="td"):
        return f'<{tag} class="n">{c}</{tag}>' if i in numeric else f"<{tag}>{c}</{tag}>"

    head = "".join(td(i, esc(h), "th") for i, h in enumerate(header))
    attrs = row_attrs or [""] * len(rows)
    body = "".join(f"<tr{a}>" + "".join(td(i, c) for i, c in enumerate(row)) + "</tr>\n" for a, row in zip(attrs, rows))
    return (f'<div class="scroll"><table class="{cls}">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}</tbody></table></div>")


# ----------------------------------------------------------------------------- summary and papers


def _summary(s: Summary, links: dict[str, str]) -> str:
    n = sum(s.papers.values())
    def count(key: str, value: int) -> str:
        return f'<span data-count="{key}">{value}</span>'

    stats = [(count("papers", n), "papers")] + [(count(st, s.papers[st]), st) for st in STATUSES] + [
        (f'{count("claims-passed", s.verdicts["PASS"])} / {count("claims", s.claims)}',
         f"claims passed ({s.verdicts['FAIL']} failed, {s.verdicts['NOT RUN']} not run)")]
    cards = "".join(f'<div class="stat{" claims" if i == len(stats) - 1 else ""}"><b>{value}</b>{esc(label)}</div>'
                    for i, (value, label) in enumerate(stats))
    rows = [[f'{_a(f"#family-{f}", f)}<span class="topic muted"><br>{esc(FAMILY_TITLES[f])}</span>', str(c["papers"]),
             *[f'<span data-family="{f}" data-count="{st}">{c[st]}</span>' for st in STATUSES],
             f"{c['passed']}/{c['claims']}"] for f, c in s.families.items()]
    table = _table(["Family", "Papers", "Repro\u00adduced", "Imple\u00admented", "Planned", "Claims passed"], rows,
                   numeric=frozenset({1, 2, 3, 4, 5}))
    nav = "".join(f"<li>{_a(href, text)}</li>" for text, href in links.items())
    return f'<section id="summary">\n<div class="stats">{cards}</div>\n{table}\n<ul class="links">{nav}</ul></section>'


def _paper_row(p: Paper, entries: list[Entry], html_dir: Path) -> list[str]:
    """Paper (slug, page in the repository, title linked to arXiv), year, status, claims passed, what it reproduces."""
    slug = f"<b>{_a(f'#{p.slug}', p.slug) if entries else esc(p.slug)}</b>"
    if page := paper_page(p.slug):
        slug += f' · {_a(rel(page, html_dir), "page")}'
    title = _a(p.url, p.title) if p.url else esc(p.title) + ' <span class="muted">(no arXiv id)</span>'
    if not entries:
        reproduces = esc(TO_REPRODUCE.get(p.slug, "")) if p.status == "planned" else \
            '<span class="muted">no claims yet</span>'
    else:
        reproduces = " ".join(f'<span class="nw"><a href="#{esc(p.slug)}-{esc(e.claim.name)}">{esc(e.claim.name)}</a> '
                              f"{_verdict(e)}</span>" for e in entries)
    return [f"{slug}<br>{title}", str(p.year), _badge(status(p, entries)), passed(entries) if entries else "",
            reproduces]


def _family(family: str, papers: list[Paper], entries: dict[str, list[Entry]], images: dict, html_dir: Path) -> str:
    ps = [p for p in papers if p.family == family]
    table = _table(["Paper (title: arXiv)", "Year", "Status", "Claims passed", "Reproduces"],
                   [_paper_row(p, entries[p.slug], html_dir) for p in ps], "papers", frozenset({1, 3}),
                   [f' id="row-{esc(p.slug)}" data-paper="{esc(p.slug)}"' for p in ps])
    articles = [_paper(p, entries[p.slug], images, html_dir) for p in ps if entries[p.slug]]
    return (f'<section id="family-{esc(family)}">\n<h2>{esc(family)}: {esc(FAMILY_TITLES[family])}</h2>\n{table}\n'
            + "\n".join(articles) + "\n</section>")


def _paper(p: Paper, entries: list[Entry], images: dict, html_dir: Path) -> str:
    meta = [f"<i>{esc(p.title)}</i> ({p.year})", _a(p.url, f"arXiv:{p.arxiv}") if p.url else "no arXiv id"]
    if page := paper_page(p.slug):
        meta.append(_a(rel(page, html_dir), "paper page"))
    meta.append(f"claims passed {passed(entries)}")
    claims = "\n".join(_claim(e, images.get((p.slug, e.claim.name))) for e in entries)
    return (f'<article class="paper" id="{esc(p.slug)}">\n<h3>{esc(p.slug)} {_badge(status(p, entries))}</h3>\n'
            f'<p class="muted">{" · ".join(meta)}</p>\n<p>{esc(p.summary)}</p>\n{claims}\n</article>')


# ----------------------------------------------------------------------------- one claim


def _breakable(key: str) -> str:
    """A dotted metric key that may wrap after its dots and underscores (not inside a word)."""
    return re.sub(r"([._])", r"\1<wbr>", esc(key))


def _metrics(record: dict) -> str:
    rows = flatten(record.get("metrics") or {})
    parts = []
    for title, group, open_ in (("Metrics", [r for r in rows if not r.detail], True),
                                ("Per-seed values and series", [r for r in rows if r.detail], False)):
        if group:
            table = _table(["Metric", "Value"], [[_breakable(r.key), esc(r.value)] for r in group], "metrics")
            attr = " open" if open_ and len(group) <= OPEN_METRICS else ""
            parts.append(f"<details{attr}><summary>{title} ({len(group)})</summary>\n{table}\n</details>")
    if record.get("notes"):
        parts.append(f'<p class="run"><b>Notes:</b> {esc(str(record["notes"]))}</p>')
    return '<div class="metrics">' + "\n".join(parts) + "</div>"


def _claim(e: Entry, image: tuple[str, tuple[int, int] | None] | None) -> str:
    parts = [f"<h4>{esc(e.claim.name)} {_verdict(e)}</h4>",
             f"<p><b>Statement:</b> {esc(e.claim.statement)}</p>", f"<p><b>Criterion:</b> {esc(e.claim.criterion)}</p>"]
    r = e.record
    parts += [f'<p class="note">Note: {esc(n)}.</p>' for n in warnings(e)]
    if r is None:
        path = f"results/{e.paper.slug}/{e.claim.name}.json"
        parts.append(f'<p class="muted">No committed result yet ({esc(path)}).</p>')
    figure, wide = "", True
    if image is not None:
        src, size = image
        dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
        wide = size is None or size[0] > WIDE_FIGURE
        figure = (f'<figure><a href="{esc(src)}"><img src="{esc(src)}"{dims} loading="lazy" '
                  f'alt="{esc(e.paper.slug)}: {esc(e.claim.name)}"></a>'
                  "<figcaption>Click the figure to open it at full size.</figcaption></figure>")
    if r is not None:
        parts.append(f'<div class="evidence {"wide" if wide else "narrow"}">{figure}\n{_metrics(r)}</div>')
        parts.append(f'<p class="run">{esc(run_summary(e))}<br>Config: {esc(config_summary(r))}</p>')
    return f'<div class="claim" id="{esc(e.paper.slug)}-{esc(e.claim.name)}">\n' + "\n".join(parts) + "\n</div>"


# ----------------------------------------------------------------------------- page and figures


def html_page(papers: list[Paper], entries: dict[str, list[Entry]], stale: list, images: dict,
              links: dict[str, Path], html_dir: Path) -> str:
    """The text of report/index.html. `images` maps (slug, claim) to (path relative to the page, (w, h) or None);
    `links` names the documents (papers.md, results.md, ...) linked from the summary, those that exist."""
    s = Summary.of(papers, entries)
    names = {"papers": "The papers (docs/papers.md)", "results": "Results as Markdown (docs/results.md)",
             "benchmarks": "Benchmarks (docs/benchmarks.md)", "readme": "README"}
    hrefs = {names.get(k, k): rel(path, html_dir) for k, path in links.items() if Path(path).is_file()}
    nav = " ".join(_a(f"#family-{f}", f) for f in FAMILIES)
    body = ['<header class="wrap">', "<h1>archzoo: the papers and their results</h1>",
            f'<p class="sub">{esc(s.line())}. Each claim below shows its verdict, criterion, figure and measured '
            "numbers; built by <code>archzoo report</code> from the committed evidence in <code>results/</code>.</p>",
            _summary(s, hrefs), "</header>",
            f'<nav class="families" aria-label="families"><div class="wrap">{nav}</div></nav>',
            '<main class="wrap">', *[_family(f, papers, entries, images, html_dir) for f in FAMILIES]]
    if stale:
        body += ['<section id="stale"><h2>Stale results</h2><ul>',
                 *[f"<li><code>results/{esc(path)}</code>: {esc(reason)}</li>" for path, reason in stale],
                 "</ul></section>"]
    body.append("</main>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>archzoo results</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, None if `data` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def copy_images(entries: dict[str, list[Entry]], html_dir: Path) -> dict[tuple[str, str], tuple[str, tuple | None]]:
    """Copy every figure to `html_dir/img/<slug>/<claim>.png` (and drop images no claim uses any more)."""
    images, wanted = {}, set()
    for e in (e for es in entries.values() for e in es if e.figure is not None):
        src = f"img/{e.paper.slug}/{e.claim.name}.png"
        dest, data = html_dir / src, e.figure.read_bytes()
        if not dest.is_file() or dest.read_bytes() != data:
            atomic_write(dest, lambda p, data=data: Path(p).write_bytes(data))
        images[(e.paper.slug, e.claim.name)] = (src, png_size(data))
        wanted.add(dest)
    for old in (html_dir / "img").glob("*/*.png"):
        if old not in wanted:
            old.unlink()
    return images
