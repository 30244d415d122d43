"""The registry: the whole course from the start, derived status, lookups with close matches."""

import json

import pytest
import torch

import archzoo
from archzoo import registry
from archzoo.catalog import FAMILIES
from archzoo.engine.claims import ClaimResult, claim, run_claim


def test_all_64_papers_are_registered_with_unique_slugs_and_known_families():
    papers = archzoo.list_papers()
    assert len(papers) == 64
    assert len({p.slug for p in papers}) == 64
    assert {p.family for p in papers} == set(FAMILIES)
    assert all(p.title and p.summary and 2012 <= p.year <= 2021 for p in papers)


def test_a_paper_with_nothing_registered_is_planned():
    assert archzoo.get_paper("eats").status == "planned"


def test_unknown_names_raise_value_error_naming_close_matches():
    with pytest.raises(ValueError, match="resnet"):
        archzoo.get_paper("resnett")
    with pytest.raises(ValueError, match="unknown model"):
        archzoo.create_model("no_such_model_xyz")
    with pytest.raises(ValueError, match="unknown family"):
        archzoo.list_papers("cnnn")


def test_status_is_derived_from_registrations_and_committed_results(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHZOO_RESULTS", str(tmp_path))
    paper = registry.get_paper("poet")
    saved = (list(paper.layers), dict(paper.claims))
    try:
        registry.register_layer("_test_poet_layer", paper="poet")(object)
        assert paper.status == "implemented"

        @claim(paper="poet", statement="s", criterion="x > 0", quick=dict(seeds=1, x=1), full=dict(seeds=1, x=-1))
        def _test_poet_claim(cfg, ctx):
            return ClaimResult(metrics={"x": cfg.x}, passed=cfg.x > 0)

        assert paper.status == "implemented"          # a claim without committed evidence
        record = run_claim("poet", "_test_poet_claim", "full", progress=False)
        assert record["passed"] is False and json.loads((tmp_path / "poet" / "_test_poet_claim.json").read_text())
        assert paper.status == "implemented"          # a failed claim is reported, never reproduced
        record = run_claim("poet", "_test_poet_claim", "full", overrides={"x": 2}, out_dir=tmp_path / "poet")
        assert record["passed"] is True
        assert paper.status == "reproduced"
    finally:
        paper.layers[:], paper.claims = saved
        registry._LAYERS.pop("_test_poet_layer", None)
    assert paper.status == "planned"


def test_quick_runs_never_write_to_results(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHZOO_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr("archzoo.engine.claims.runs_dir", lambda: tmp_path / "runs")
    paper = registry.get_paper("gan")
    saved = dict(paper.claims)
    try:
        @claim(paper="gan", statement="s", criterion="c", quick=dict(seeds=1), full=dict(seeds=1))
        def _test_gan_claim(cfg, ctx):
            return ClaimResult(metrics={}, passed=True)

        run_claim("gan", "_test_gan_claim", "quick")
        assert (tmp_path / "runs" / "gan" / "_test_gan_claim.json").exists()
        assert not (tmp_path / "results").exists()
    finally:
        paper.claims = saved


def test_claim_configs_must_say_how_many_seeds():
    with pytest.raises(ValueError, match="seeds"):
        claim(paper="gan", statement="s", criterion="c", quick=dict(steps=1), full=dict(seeds=1))


def test_a_paper_folder_that_fails_to_import_fails_every_lookup(monkeypatch):
    import importlib

    real = importlib.import_module

    def broken(name, *args):
        if name.endswith(".resnet"):
            raise ImportError("simulated broken paper folder")
        return real(name, *args)

    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry.importlib, "import_module", broken)
    for _ in range(2):                                      # the second lookup raises too, not a partial registry
        with pytest.raises(ImportError, match="simulated"):
            registry.list_attentions()
    monkeypatch.setattr(registry.importlib, "import_module", real)
    assert "full" in registry.list_attentions()


@pytest.mark.parametrize("name", ["mnist_mlp", "resnet18", "bit_r50x1", "reformer_tiny"])
def test_a_replaced_head_survives_save_and_load(name, tmp_path):
    from archzoo import create_model, from_pretrained

    model = create_model(name)
    model.reset_classifier(7)
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path)
    assert loaded.num_classes == 7
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(),
                                                 strict=True))
    untouched = create_model(name)
    untouched.save_pretrained(tmp_path / "untouched")
    assert "num_classes" not in json.loads((tmp_path / "untouched" / "config.json").read_text())["kwargs"]


def test_every_registration_table_is_listed_and_refuses_a_name_twice():
    from archzoo.registry import TABLES, Table, table

    archzoo.list_models()                                   # imports the papers, which register into the tables
    assert {"model", "attention", "layer", "benchmark", "feed-forward", "dataset", "attention benchmark",
            "norm benchmark", "model reference"} <= set(TABLES)
    assert all(isinstance(t, Table) and t.kind == kind for kind, t in TABLES.items())
    t = table("_test kind")
    try:
        t.add("x", int)
        assert t.add("x", int) is int                        # the same entry again is fine
        with pytest.raises(ValueError, match="_test kind 'x' is registered twice"):
            t.add("x", float)
        with pytest.raises(archzoo.registry.UnknownNameError, match="unknown _test kind 'y'"):
            t.lookup("y")
    finally:
        TABLES.pop("_test kind")
