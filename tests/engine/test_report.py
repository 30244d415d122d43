"""The report: every paper summarised, each claim's evidence shown readably, every link and figure present,
substitute data sets said, output reproducible."""

import json
import re
import struct
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from archzoo import list_papers, registry
from archzoo.catalog import PAPERS, TO_REPRODUCE
from archzoo.engine.claims import ClaimResult, claim
from archzoo.engine.report import build_report
from archzoo.engine.report_html import png_size
from archzoo.engine.report_values import flatten

# A 1x1 PNG: the report copies figures byte for byte and reads only their size.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")
STATEMENT = "Fakes fool D <50% of the time & more"
SLUGS = [p[0] for p in PAPERS]


def wide_png(width: int, height: int) -> bytes:
    """PNG bytes whose IHDR says width x height (enough for the report, which never decodes them)."""
    return PNG[:16] + struct.pack(">II", width, height) + PNG[24:]


@pytest.fixture
def fake_claim():
    """A throwaway `gan` claim, removed afterwards; yields a function writing its record into a results dir."""
    paper = registry.get_paper("gan")
    saved = dict(paper.claims)

    @claim(paper="gan", statement=STATEMENT, criterion="d_acc < 0.5", quick=dict(seeds=1), full=dict(seeds=2))
    def _test_report_claim(cfg, ctx):
        return ClaimResult(metrics={}, passed=True)

    def write(results: Path, png: bytes = PNG, **changes) -> Path:
        record = {"paper": "gan", "claim": "_test_report_claim", "statement": STATEMENT, "criterion": "d_acc < 0.5",
                  "mode": "full", "config": {"seeds": 2, "steps": 100}, "metrics": {"d_acc": {"seed0": 0.4123456}},
                  "passed": True, "notes": "", "datasets": {}, "device": "cpu", "wall_time_s": 12.3,
                  "versions": {}, "date": "2024-01-01T00:00:00Z", "figure": "_test_report_claim.png", **changes}
        (results / "gan").mkdir(parents=True, exist_ok=True)
        (results / "gan" / "_test_report_claim.json").write_text(json.dumps(record))
        (results / "gan" / "_test_report_claim.png").write_bytes(png)
        return results

    yield write
    paper.claims = saved


@pytest.fixture
def results(tmp_path, fake_claim):
    """A results dir holding a passed record (+ figure) of the throwaway claim and a stale record."""
    results = fake_claim(tmp_path / "results")
    record = json.loads((results / "gan" / "_test_report_claim.json").read_text())
    (results / "gan" / "_removed_claim.json").write_text(json.dumps({**record, "claim": "x"}))
    return results


def _build(tmp_path, results):
    return build_report(results=results, docs_path=tmp_path / "docs" / "results.md", html_dir=tmp_path / "report")


class Page(HTMLParser):
    """What the tests read from the HTML: ids, links, images, paper rows and the summary counts."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.hrefs, self.srcs, self.rows, self.counts, self.tags = set(), [], [], [], {}, Counter()
        self._count = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] += 1
        self.ids.add(a.get("id"))
        if tag == "a":
            self.hrefs.append(a["href"])
        if tag == "img":
            self.srcs.append(a["src"])
        if tag == "tr" and "data-paper" in a:
            self.rows.append(a["data-paper"])
        if "data-count" in a:
            self._count = (a.get("data-family"), a["data-count"])

    def handle_data(self, data):
        if self._count is not None:
            self.counts[self._count] = int(data)
            self._count = None


CHECKOUT = Path(registry.__file__).resolve().parents[2]      # holds src/archzoo (or site-packages/archzoo)


def _check_page(html_path: Path, tmp_path: Path) -> Page:
    """Parse the page; every anchor resolves to an id, every relative link and image to a file in the checkout
    or in the tmp dir the report was built into."""
    page = Page(html_path.read_text())
    assert page.tags["html"] == page.tags["body"] == 1
    for href in page.hrefs + page.srcs:
        if href.startswith("#"):
            assert href[1:] in page.ids, href
        elif not href.startswith("https://"):
            target = (html_path.parent / href).resolve()
            assert target.is_file(), href
            assert target.is_relative_to(CHECKOUT) or target.is_relative_to(tmp_path.resolve()), href
    for src in page.srcs:
        assert src.endswith(".png") and f'<a href="{src}">' in html_path.read_text(), src   # opens full size
    return page


def test_markdown_shows_the_claims_evidence_and_a_row_per_paper(tmp_path, results):
    md_path, papers_path, _ = _build(tmp_path, results)
    md = md_path.read_text()
    assert STATEMENT in md and "d_acc < 0.5" in md and "`_test_report_claim` · PASS" in md
    assert "| d_acc.seed0 | 0.4123 |" in md
    assert "![gan: _test_report_claim](../results/gan/_test_report_claim.png)" in md
    summary = md.split("|---|---|---|---|---|---|\n", 1)[1].split("\n\n", 1)[0]
    assert len(summary.splitlines()) == 64
    assert re.search(r"\| \[gan\]\(#gan\) \| .* \| 1/1 \|", summary)
    assert "`results/gan/_removed_claim.json`: claim no longer registered" in md
    assert papers_path == tmp_path / "docs" / "papers.md" and papers_path.is_file()


def test_html_is_self_contained_escaped_and_rebuilds_identically(tmp_path, results):
    *_, html_path = _build(tmp_path, results)
    page = html_path.read_text()
    assert "Fakes fool D &lt;50% of the time &amp; more" in page and STATEMENT not in page
    assert 'src="img/gan/_test_report_claim.png"' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert (tmp_path / "report" / "img" / "gan" / "_test_report_claim.png").read_bytes() == PNG
    outputs = [tmp_path / "docs" / "results.md", tmp_path / "docs" / "papers.md", html_path]
    first = [p.read_bytes() for p in outputs]
    _build(tmp_path, results)
    assert [p.read_bytes() for p in outputs] == first


def test_html_has_a_row_per_paper_and_every_link_and_figure_resolves(tmp_path, results):
    *_, html_path = _build(tmp_path, results)
    page = _check_page(html_path, tmp_path)
    assert sorted(page.rows) == sorted(SLUGS)
    assert page.srcs == ["img/gan/_test_report_claim.png"]
    assert {"gan", "gan-_test_report_claim", "row-gan", "family-generative"} <= page.ids


def test_a_substitute_data_set_is_said_beside_the_verdict(tmp_path, fake_claim):
    for i, changes in enumerate([{"substitutes": {"fashion-mnist": "digits"}},
                                 {"datasets": {"fashion-mnist": "digits"}},        # a record without `substitutes`
                                 {"datasets": {"fashion-mnist": "fashion-mnist"}}]):
        out = tmp_path / str(i)
        md_path, papers_path, html_path = _build(out, fake_claim(out / "results", **changes))
        md, html = md_path.read_text(), html_path.read_text()
        said = i < 2
        assert ("`_test_report_claim` · PASS (on digits)" in md) == said
        assert ("**PASS (on digits)** `_test_report_claim`" in papers_path.read_text()) == said
        assert ("digits instead of fashion-mnist" in md) == said == ("digits instead of fashion-mnist" in html)
        assert ('<span class="badge sub-data">on digits</span>' in html) == said


def test_wide_figures_take_the_full_width_and_narrow_ones_sit_beside_their_metrics(tmp_path, fake_claim):
    assert png_size(wide_png(1200, 400)) == (1200, 400) and png_size(b"GIF89a" + bytes(20)) is None
    for width, layout in ((1200, "wide"), (600, "narrow")):
        *_, html_path = _build(tmp_path / layout, fake_claim(tmp_path / layout / "results", png=wide_png(width, 400)))
        html = html_path.read_text()
        assert f'<div class="evidence {layout}">' in html and f'width="{width}" height="400"' in html


def test_metric_values_carry_units_and_long_series_are_summarised():
    metrics = {"test_accuracy": {"vit": 81.2345}, "error_per_seed": [14.55, 13.9], "time_ms": 2396.1,
               "memory_mb": [27.849, 30.0232, None], "total_cpu_s": 6.8664, "peak_mb": 12.5,
               "slopes": {"peak_mb": 1.0231}, "state_bytes": 201326592,
               "params": 59880472, "curve": [2.0 - i / 400 for i in range(600)], "curves": [[1.0, 2.0, 3.0]] * 3,
               "rows": [{"method": "a", "n": 1}, {"method": "b", "n": 2}], "ok": True, "never": None, "tiny": 1.6e-16}
    assert flatten(metrics) == [
        ("test_accuracy.vit", "81.23%", False), ("error_per_seed", "14.55%, 13.9%", True),
        ("time_ms", "2,396 ms", False), ("memory_mb", "27.85, 30.02, n/a MiB", False),
        ("total_cpu_s", "6.866 s", False), ("peak_mb", "12.5 MiB", False),
        ("slopes.peak_mb", "1.023", False), ("state_bytes", "192 MiB", False), ("params", "59,880,472", False),
        ("curve", "600 values: 2 → 0.5025 (min 0.5025, max 2)", True),
        ("curves", "3 × 3 values (min 1, max 3)", True), ("rows", "2 records (method, n)", True),
        ("ok", "yes", False), ("never", "n/a", False), ("tiny", "1.60e-16", False)]


def test_the_real_results_build_with_counts_that_agree_with_the_registry(tmp_path):
    """The committed evidence: a row per paper, every link and figure present, the registry's counts."""
    root = registry.repo_root()
    if root is None:
        pytest.skip("needs a source checkout (results/ and the paper pages)")
    md_path, papers_path, html_path = build_report(docs_path=tmp_path / "docs" / "results.md",
                                                   html_dir=tmp_path / "report")
    page = _check_page(html_path, tmp_path)
    papers = list_papers()
    assert sorted(page.rows) == sorted(SLUGS) and len(SLUGS) == 64
    statuses = Counter(p.status for p in papers)
    passed = [p.claims_passed() for p in papers]
    assert {k: v for (fam, k), v in page.counts.items() if fam is None} == {
        "papers": 64, **{s: statuses[s] for s in ("reproduced", "implemented", "planned")},
        "claims-passed": sum(n for n, _ in passed), "claims": sum(t for _, t in passed)}
    for p in papers:
        assert page.counts[(p.family, p.status)] == sum(q.status == p.status for q in papers if q.family == p.family)
        assert p.url is None or p.url in page.hrefs
        if p.status != "planned":
            assert (root / "src" / "archzoo" / "papers" / p.slug / "README.md").is_file()
            assert any(h.endswith(f"src/archzoo/papers/{p.slug}/README.md") for h in page.hrefs), p.slug
    figures = {f"img/{png.parent.name}/{png.name}" for png in (root / "results").glob("*/*.png")}
    assert figures and figures <= set(page.srcs)


def test_papers_md_lists_every_paper_with_its_status_and_what_it_reproduces(tmp_path):
    _, papers_path, _ = build_report(docs_path=tmp_path / "docs" / "results.md", html_dir=tmp_path / "report")
    text = papers_path.read_text()
    sections = dict(re.findall(r"^### (\w+)\n\n(.*?)(?=^### |^## |\Z)", text, flags=re.M | re.S))
    assert list(sections) == SLUGS and set(TO_REPRODUCE) == set(SLUGS)
    for p in list_papers():
        body = sections[p.slug]
        assert p.title in body and f"**{p.status}**" in body
        assert p.url is None or f"[arXiv:{p.arxiv}]({p.url})" in body
        if p.status == "planned" and not p.claims:
            assert f"To reproduce: {TO_REPRODUCE[p.slug]}" in body and "paper page" not in body
        else:
            assert "paper page" in body and all(c.statement in body for c in p.claims.values())
    for link in re.findall(r"\]\((\.\./[^)]+)\)", text):
        assert (papers_path.parent / link).resolve().is_file(), link


def test_the_committed_papers_md_lists_all_64_papers():
    root = registry.repo_root()
    if root is None:
        pytest.skip("needs a source checkout")
    headings = re.findall(r"^### (\w+)$", (root / "docs" / "papers.md").read_text(), flags=re.M)
    assert headings == SLUGS and len(SLUGS) == 64
