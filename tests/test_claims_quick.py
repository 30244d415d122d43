"""Every registered claim's quick config runs end to end: on the fallback data (a fresh machine), and on
the real data where it is installed.

The records come from the session's `quick_claim` fixture (tests/conftest.py), so a paper's own tests
of its quick-claim metrics reuse them instead of running the claim again.
"""

import json
import math
from pathlib import Path

import pytest

import archzoo
from archzoo.cli import main
from archzoo.data import DatasetUnavailable, dataset_info, locate
from archzoo.engine.claims import verdict

CLAIMS = [(p.slug, name) for p in archzoo.list_papers() for name in p.claims]


def finite_numbers(obj) -> bool:
    """Every number in a JSON tree is finite (NaN and inf are written as strings, so they show up here too)."""
    if isinstance(obj, dict):
        return all(finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite_numbers(v) for v in obj)
    if isinstance(obj, str):
        return obj.lower() not in ("nan", "inf", "-inf")
    return not isinstance(obj, float) or math.isfinite(obj)


def check_record(record: dict, slug: str, name: str) -> None:
    folder = Path(record["path"]).parent
    saved = json.loads(Path(record["path"]).read_text())
    assert saved == {k: v for k, v in record.items() if k != "path"}
    assert (saved["paper"], saved["claim"], saved["mode"]) == (slug, name, "quick")
    assert isinstance(saved["passed"], bool) and saved["metrics"] and finite_numbers(saved["metrics"])
    assert saved["figure"] == f"{name}.png" and (folder / f"{name}.png").stat().st_size > 0
    assert set(saved["substitutes"]) <= set(saved["datasets"])
    assert verdict(saved).startswith("PASS" if saved["passed"] else "FAIL")


def test_there_are_claims_to_run():
    assert len(CLAIMS) >= 40 and len(set(CLAIMS)) == len(CLAIMS)


@pytest.mark.parametrize("slug, name", CLAIMS, ids=[f"{s}.{n}" for s, n in CLAIMS])
def test_quick_claim_runs_on_the_fallback_data(quick_claim, slug, name):
    record = quick_claim(slug, name, "fallback")
    check_record(record, slug, name)
    for asked, used in record["substitutes"].items():       # every missing dataset was replaced, and it says so
        assert record["datasets"][asked] == used
        assert verdict(record).endswith(f"(on {used})")


@pytest.mark.parametrize("slug, name", CLAIMS, ids=[f"{s}.{n}" for s, n in CLAIMS])
def test_quick_claim_runs_on_the_real_data(quick_claim, slug, name):
    needs = quick_claim(slug, name, "fallback")["substitutes"]
    if not needs:
        pytest.skip("uses no dataset that has a fallback: its fallback run already ran on the real data")
    for dataset in needs:
        try:
            locate(dataset, dataset_info(dataset).source)
        except DatasetUnavailable:
            pytest.skip(f"{dataset} is not installed (`make data`, or `archzoo data where {dataset}`)")
    record = quick_claim(slug, name, "real")
    check_record(record, slug, name)
    assert record["substitutes"] == {} and set(record["datasets"]) >= set(needs)
    assert all(record["datasets"][d] == d for d in needs)


def test_the_demo_table_marks_substitutes_and_says_what_the_status_table_is(quick_claim, monkeypatch, capsys):
    demos = [(p.slug, c.name) for p in archzoo.list_papers() for c in p.claims.values() if c.demo is not None]
    # the demo's own configs train for minutes: its table is checked on the quick records (fallback data)
    monkeypatch.setattr("archzoo.engine.claims.run_claim", lambda slug, name, mode, **kw: quick_claim(slug, name))
    assert main(["demo", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("Demo claims"):out.index("Paper status")]
    records = {f"{s}.{n}": quick_claim(s, n) for s, n in demos}
    for claim_name, record in records.items():
        row = next(line for line in table.splitlines() if line.startswith(claim_name + " "))
        assert f" {verdict(record)} " in row
    substituted = [r for r in records.values() if r["substitutes"]]
    assert substituted, "a demo claim on Fashion-MNIST runs on digits here"
    assert f"{len(substituted)} of {len(records)} demo claims ran on substitute data (digits for fashion-mnist)" in out
    assert "Paper status, from the committed evidence of full runs (results/), not from this demo:" in out
