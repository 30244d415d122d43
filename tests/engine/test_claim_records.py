"""What a claim's record says about its data (substitutes are never silent) and about where it came from."""

import json
import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch

from archzoo import registry
from archzoo.data import DatasetUnavailable
from archzoo.engine.claims import ClaimResult, claim, run_claim, verdict
from archzoo.engine.provenance import git_state


@pytest.fixture
def data_claim(tmp_path, monkeypatch):
    """A claim of the planned paper 'gan' that asks for fashion-mnist (fallback digits) on a machine without it;
    `steps` lists what it reached. Results go to tmp_path/results, the registry is restored afterwards."""
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("ARCHZOO_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr("archzoo.engine.claims.runs_dir", lambda: tmp_path / "runs")
    paper = registry.get_paper("gan")
    saved = dict(paper.claims)
    steps = []

    @claim(paper="gan", statement="s", criterion="classes == 10", quick=dict(seeds=1), full=dict(seeds=1),
           demo=dict(seeds=1))
    def _test_data_claim(cfg, ctx):
        data = ctx.dataset("fashion-mnist", fallback="digits")
        steps.append("trained")
        return ClaimResult(metrics={"classes": data.num_classes}, passed=data.num_classes == 10)

    yield steps
    paper.claims = saved


@pytest.mark.parametrize("mode", ["quick", "demo"])
def test_a_substitute_is_recorded_in_the_verdict_and_in_a_banner_after_the_run(data_claim, mode, tmp_path, capsys):
    record = run_claim("gan", "_test_data_claim", mode, progress=False)
    saved = json.loads((tmp_path / "runs" / "gan" / "_test_data_claim.json").read_text())
    assert saved["substitutes"] == {"fashion-mnist": "digits"} and saved["datasets"] == {"fashion-mnist": "digits"}
    assert verdict(record) == "PASS (on digits)"
    err = capsys.readouterr().err
    banner = err[err.index("!!!!"):]
    assert f"gan._test_data_claim ({mode}) ran on SUBSTITUTE data: digits instead of fashion-mnist." in banner
    assert "Its verdict, PASS (on digits), is about digits" in banner and "archzoo data where fashion-mnist" in banner
    assert banner.rstrip().endswith("!" * 100)                 # the banner is the last thing the run prints


def test_a_full_run_refuses_a_substitute_before_training_and_writes_nothing(data_claim, tmp_path):
    with pytest.raises(DatasetUnavailable, match="a full run needs fashion-mnist itself and never substitutes digits"):
        run_claim("gan", "_test_data_claim", "full", progress=False)
    assert data_claim == [] and not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_a_run_on_the_real_data_has_no_substitutes(data_claim, tmp_path):
    folder = tmp_path / "no-data" / "fashion-mnist"                # ARCHZOO_DATA_DIR/fashion-mnist: a tiny one
    folder.mkdir(parents=True)
    for stem, shape in (("train-images-idx3-ubyte", (10, 28, 28)), ("train-labels-idx1-ubyte", (10,)),
                        ("t10k-images-idx3-ubyte", (10, 28, 28)), ("t10k-labels-idx1-ubyte", (10,))):
        values = np.arange(np.prod(shape)).reshape(shape) % 10
        (folder / stem).write_bytes(bytes([0, 0, 8, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
                                    + values.astype(np.uint8).tobytes())
    record = run_claim("gan", "_test_data_claim", "quick", progress=False)
    assert record["substitutes"] == {} and record["datasets"] == {"fashion-mnist": "fashion-mnist"}
    assert verdict(record) == "PASS"


def test_the_record_says_which_code_and_machine_produced_it(data_claim, tmp_path):
    record = run_claim("gan", "_test_data_claim", "quick", progress=False)
    prov = json.loads((tmp_path / "runs" / "gan" / "_test_data_claim.json").read_text())["provenance"]
    assert (prov["git_commit"], prov["git_dirty"]) == git_state(registry.repo_root())
    assert prov["torch"] == torch.__version__ == record["versions"]["torch"]
    assert prov["torch_threads"] == torch.get_num_threads()
    for key in ("load_avg_start", "load_avg_end"):
        assert len(prov[key]) == 3 and all(v >= 0 for v in prov[key])


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_reads_the_commit_and_a_dirty_tree_and_nothing_outside_a_checkout(tmp_path):
    assert git_state(None) == (None, None)
    assert git_state(tmp_path) == (None, None)

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "one")
    assert git_state(tmp_path) == (git("rev-parse", "HEAD"), False)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (git("rev-parse", "HEAD"), True)
    (tmp_path / "sub").mkdir()
    assert git_state(tmp_path / "sub") == (None, None)        # inside a checkout, but not the top of one
