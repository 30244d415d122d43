"""Bad input on the command line: one line on stderr and exit status 2, before anything is printed or written."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import archzoo
from archzoo import cli
from archzoo.cli import main

SRC = str(Path(archzoo.__file__).parents[1])
TRAIN = ["train", "mnist_mlp", "--data", "digits", "--set", "img_size=8", "--steps", "1", "--batch-size", "4"]


def bad_files(tmp_path: Path) -> dict:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "a_file").write_text("not a folder")
    return {"latin1": str(tmp_path / "latin1.txt"), "empty": str(tmp_path / "empty.txt"),
            "file": str(tmp_path / "a_file")}


CASES = {
    "no CUDA": (TRAIN + ["--device", "cuda"], "--device cuda: no such CUDA device"),
    "unknown --set key": (TRAIN + ["--set", "bogus_option=1"], "mnist_mlp cannot be built with .*bogus_option=1: "),
    "badly typed --set": (TRAIN + ["--set", "num_classes=ten"], 'mnist_mlp cannot be built with .*num_classes="ten"'),
    "--set without =": (TRAIN + ["--set", "num_classes"], "--set expects key=value"),
    "unknown --data-set": (TRAIN + ["--data-set", "bogus=1"], "dataset 'digits' takes no option.*bogus"),
    "--out is a file": (TRAIN + ["--out", "{file}"], "a_file exists and is not a folder"),
    "--out is the working directory": (TRAIN + ["--out", "."], r"\. is the working directory or holds it"),
    "negative clip": (TRAIN + ["--grad-clip", "-1"], "grad_clip must be > 0"),
    "zero clip": (TRAIN + ["--grad-clip", "0"], "grad_clip must be > 0"),
    "negative warm-up": (TRAIN + ["--warmup", "-1"], "warmup_steps must be >= 0"),
    "text not UTF-8": (["train", "reformer_tiny", "--data", "{latin1}", "--steps", "1"], "latin1.txt: not UTF-8"),
    "empty text": (["train", "reformer_tiny", "--data", "{empty}", "--steps", "1"], "empty"),
    "image model on text": (["train", "resnet20", "--data", "pydoc", "--steps", "1"],
                            r"resnet20 is an image model \(input \(3, 32, 32\)\) and --data pydoc is text"),
    "image model on a task": (["train", "resnet20", "--data", "copy", "--steps", "1"],
                              "resnet20 is an image model .* is a token sequence task"),
    "sequence model on images": (["train", "reformer_tiny", "--data", "digits", "--steps", "1"],
                                 r"reformer_tiny is a sequence model \(token ids \(B, N\)\) .* gives images"),
    "bidirectional model on text": (["train", "linformer_tiny", "--data", "pydoc", "--steps", "1"],
                                    r"linformer_tiny cannot be a next-character model: it attends both ways"),
    "window over max_len": (["train", "reformer_tiny", "--data", "pydoc", "--block-size", "4096"],
                            "--block-size 4096: reformer_tiny takes at most 1024 tokens"),
    "resume with nothing to resume": (TRAIN + ["--resume"], "cannot resume: no checkpoint at"),
    "run on a device that does not exist": (["run", "resnet", "--quick", "--device", "tpu"], "got 'tpu'"),
    "run --set unknown key": (["run", "resnet", "--quick", "--set", "bogus=1"],
                              "--set bogus: not a config key of resnet.degradation .*steps"),
    "run --set wrong type": (["run", "resnet", "--quick", "--set", "steps=ten"],
                             '--set steps="ten": resnet.degradation takes an integer there'),
    "run --set wrong element": (["run", "resnet", "--quick", "--set", 'depths=[8, "x"]'], "takes a list"),
    "run --seeds 0": (["run", "resnet", "--quick", "--seeds", "0"], "--seeds must be >= 1"),
    "run --out is a file": (["run", "resnet", "--quick", "--out", "{file}"], "exists and is not a folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2_before_any_output(case, tmp_path, capsys, monkeypatch):
    argv, match = CASES[case]
    if case == "no CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    files = bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [a.format(**files) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("archzoo: error: ") and captured.err.count("\n") == 1, captured.err
    assert re.search(match, captured.err), captured.err
    assert captured.out == ""                                           # no header before the error
    assert not (tmp_path / "out").exists()                              # nothing written


def test_a_causal_sequence_model_trains_on_text(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "reformer_tiny", "--data", "pydoc", "--steps", "1", "--batch-size", "2",
                 "--block-size", "32", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    metrics = json.loads(stdout[: stdout.rindex("}") + 1])
    assert {"final_train_loss", "val_loss", "val_accuracy"} <= set(metrics)
    model = archzoo.from_pretrained(out)
    from archzoo.data import load_dataset

    assert model.vocab_size == model.num_classes == load_dataset("pydoc").tokenizer.vocab_size
    assert {"metrics.jsonl", "checkpoints", "config.json", "model.safetensors"} <= set(os.listdir(out))


def test_the_models_named_for_text_exist():
    assert set(cli.TEXT_MODELS) <= set(archzoo.list_models())


def test_a_preset_that_cannot_be_built_is_one_line_and_the_others_are_listed(monkeypatch, capsys):
    real = cli.count_parameters

    def count(name, **kw):
        if name == "resnet20":
            raise RuntimeError("simulated\nsecond line")
        return real(name, **kw)

    monkeypatch.setattr(cli, "count_parameters", count)
    assert main(["models", "resnet2*"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "archzoo: resnet20: cannot be built on the meta device (RuntimeError: simulated)\n"
    rows = {line.split()[0]: line.split()[-1] for line in captured.out.splitlines()[2:]}
    assert rows["resnet20"] == "error" and rows["resnet20_gn"] == f"{real('resnet20_gn'):,}"


def test_run_set_takes_the_kinds_of_the_claims_configs():
    overrides = cli._claim_overrides("resnet", ["degradation"], {"depths": [8, 20], "lr": 1, "steps": 3})
    assert overrides == {"depths": (8, 20), "lr": 1, "steps": 3}


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"archzoo {archzoo.__version__}\n"


def run_module(*args, **kw):
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen([sys.executable, "-m", "archzoo", *args], env=env, stderr=subprocess.PIPE, **kw)


def test_python_dash_m_archzoo_is_the_command():
    proc = run_module("--version", stdout=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.decode() == f"archzoo {archzoo.__version__}\n", err.decode()


def test_a_reader_that_stops_early_ends_the_output_quietly():
    proc = run_module("list", stdout=subprocess.PIPE)
    proc.stdout.close()                                  # like `| head` exiting before the table is written
    _, err = proc.communicate(timeout=120)
    assert err.decode() == "" and proc.returncode == 1
