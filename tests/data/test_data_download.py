import hashlib

import pytest

from archzoo.data import download


def _source(tmp_path, content=b"archzoo test payload\n"):
    src = tmp_path / "src" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(content)
    return src, hashlib.sha256(content).hexdigest()


def test_download_with_the_right_checksum_writes_the_file(tmp_path):
    src, sha = _source(tmp_path)
    dest = download(src.as_uri(), tmp_path / "out" / "payload.bin", sha)
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["payload.bin"]


def test_download_with_a_wrong_checksum_names_both_digests_and_leaves_no_file(tmp_path):
    src, sha = _source(tmp_path)
    wrong = "0" * 64
    with pytest.raises(ValueError, match=f"expected SHA-256 {wrong}, received {sha}"):
        download(src.as_uri(), tmp_path / "out" / "payload.bin", wrong)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_failed_download_leaves_no_partial_file(tmp_path):
    with pytest.raises(OSError):
        download((tmp_path / "missing.bin").as_uri(), tmp_path / "out" / "missing.bin", "0" * 64)
    assert list((tmp_path / "out").iterdir()) == []
