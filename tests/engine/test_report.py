"""The report: every paper summarised, each claim's evidence shown, stale results listed, output reproducible."""

import json
import re

import pytest

from archzoo import registry
from archzoo.engine.claims import ClaimResult, claim
from archzoo.engine.report import build_report, flatten

# A 1x1 PNG: the report copies figures byte for byte and never decodes them.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")
STATEMENT = "Fakes fool D <50% of the time & more"


@pytest.fixture
def results(tmp_path):
    """A results dir holding a passed record (+ figure) of a throwaway `gan` claim and a stale record."""
    paper = registry.get_paper("gan")
    saved = dict(paper.claims)

    @claim(paper="gan", statement=STATEMENT, criterion="d_acc < 0.5", quick=dict(seeds=1), full=dict(seeds=2))
    def _test_report_claim(cfg, ctx):
        return ClaimResult(metrics={}, passed=True)

    record = {"paper": "gan", "claim": "_test_report_claim", "statement": STATEMENT, "criterion": "d_acc < 0.5",
              "mode": "full", "config": {"seeds": 2, "steps": 100}, "metrics": {"d_acc": {"seed0": 0.4123456}},
              "passed": True, "notes": "", "datasets": {}, "device": "cpu", "wall_time_s": 12.3,
              "versions": {}, "date": "2024-01-01T00:00:00Z", "figure": "_test_report_claim.png"}
    (tmp_path / "results" / "gan").mkdir(parents=True)
    (tmp_path / "results" / "gan" / "_test_report_claim.json").write_text(json.dumps(record))
    (tmp_path / "results" / "gan" / "_test_report_claim.png").write_bytes(PNG)
    (tmp_path / "results" / "gan" / "_removed_claim.json").write_text(json.dumps({**record, "claim": "x"}))
    yield tmp_path / "results"
    paper.claims = saved


def _build(tmp_path, results):
    return build_report(results=results, docs_path=tmp_path / "docs" / "results.md", html_dir=tmp_path / "report")


def test_markdown_shows_the_claims_evidence_and_a_row_per_paper(tmp_path, results):
    md_path, _ = _build(tmp_path, results)
    md = md_path.read_text()
    assert STATEMENT in md and "d_acc < 0.5" in md and "`_test_report_claim` · PASS" in md
    assert "| d_acc.seed0 | 0.4123 |" in md
    assert "![gan: _test_report_claim](../results/gan/_test_report_claim.png)" in md
    summary = md.split("|---|---|---|---|---|---|\n", 1)[1].split("\n\n", 1)[0]
    assert len(summary.splitlines()) == 64
    assert re.search(r"\| \[gan\]\(#gan\) \| .* \| 1/1 \|", summary)
    assert "`results/gan/_removed_claim.json`: claim no longer registered" in md


def test_html_is_self_contained_escaped_and_rebuilds_identically(tmp_path, results):
    _, html_path = _build(tmp_path, results)
    page = html_path.read_text()
    assert "Fakes fool D &lt;50% of the time &amp; more" in page and STATEMENT not in page
    assert 'src="img/gan/_test_report_claim.png"' in page
    assert (tmp_path / "report" / "img" / "gan" / "_test_report_claim.png").read_bytes() == PNG
    first = [p.read_bytes() for p in (tmp_path / "docs" / "results.md", html_path)]
    _build(tmp_path, results)
    assert [p.read_bytes() for p in (tmp_path / "docs" / "results.md", html_path)] == first


def test_nested_metrics_flatten_to_dotted_keys_with_four_significant_digits():
    assert flatten({"err": {"bn": {2: 12.34567}}, "ok": True, "curve": [1.0, 0.123456]}) == [
        ("err.bn.2", "12.35"), ("ok", "true"), ("curve", "[1, 0.1235]")]
