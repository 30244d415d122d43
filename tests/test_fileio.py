"""Atomic writes: complete files with ordinary permissions, nothing left behind on failure."""

import os
import stat

import pytest

from archzoo.fileio import atomic_write, atomic_write_dir, public_mode, sha256


def test_atomic_write_gives_the_mode_of_an_ordinary_file(tmp_path):
    path = atomic_write(tmp_path / "a.json", lambda p: open(p, "w").write("{}"))
    assert path.read_text() == "{}"
    assert stat.S_IMODE(os.stat(path).st_mode) == public_mode()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def fail(p):
        open(p, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def write_pair(text):
    def write(folder):
        (folder / "a.json").write_text(text)
        with os.fdopen(os.open(folder / "b.bin", os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:   # like safetensors
            f.write(text)
    return write


def test_atomic_write_dir_replaces_the_whole_folder(tmp_path):
    target = tmp_path / "out"
    atomic_write_dir(target, write_pair("old"))
    (target / "stale.txt").write_text("from an older save")
    atomic_write_dir(target, write_pair("new"))
    assert sorted(p.name for p in target.iterdir()) == ["a.json", "b.bin"]
    assert (target / "a.json").read_text() == (target / "b.bin").read_text() == "new"
    assert os.listdir(tmp_path) == ["out"]
    assert stat.S_IMODE(os.stat(target).st_mode) == public_mode(directory=True)
    assert all(stat.S_IMODE(os.stat(p).st_mode) == public_mode() for p in target.iterdir())


def test_atomic_write_dir_can_keep_the_other_entries_of_the_folder(tmp_path):
    target = tmp_path / "run"
    (target / "checkpoints").mkdir(parents=True)
    (target / "metrics.jsonl").write_text("{}\n")
    (target / "a.json").write_text("old")
    atomic_write_dir(target, write_pair("new"), keep_others=True)
    assert sorted(p.name for p in target.iterdir()) == ["a.json", "b.bin", "checkpoints", "metrics.jsonl"]
    assert (target / "a.json").read_text() == "new" and (target / "metrics.jsonl").read_text() == "{}\n"
    assert os.listdir(tmp_path) == ["run"]


def test_a_failed_folder_write_keeps_the_old_pair_whole(tmp_path):
    target = tmp_path / "out"
    atomic_write_dir(target, write_pair("old"))

    def fail(folder):
        write_pair("new")(folder)
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write_dir(target, fail)
    assert (target / "a.json").read_text() == (target / "b.bin").read_text() == "old"
    assert os.listdir(tmp_path) == ["out"]


def test_atomic_write_dir_refuses_a_file_in_place_of_the_folder(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        atomic_write_dir(tmp_path / "out", write_pair("new"))
    assert (tmp_path / "out").read_text() == "a file"


def test_sha256_is_hashlibs():
    import hashlib

    assert sha256(__file__) == hashlib.sha256(open(__file__, "rb").read()).hexdigest()


def test_atomic_write_dir_refuses_to_replace_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    for target in (".", tmp_path):
        with pytest.raises(ValueError, match="is the working directory or holds it"):
            atomic_write_dir(target, write_pair("new"))
    assert os.listdir(tmp_path) == ["run"] and os.listdir(tmp_path / "run") == []


def test_atomic_write_dir_writes_through_a_symlinked_folder(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    atomic_write_dir(tmp_path / "link", write_pair("new"), keep_others=True)
    assert (tmp_path / "link").is_symlink()
    assert sorted(os.listdir(tmp_path / "real")) == ["a.json", "b.bin", "notes.txt"]
