"""Atomic writes: complete files with ordinary permissions, nothing left behind on failure."""

import os
import stat

import pytest

from archzoo.fileio import atomic_write, public_mode


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
