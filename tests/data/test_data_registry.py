"""The dataset table, where files are looked for (ARCHZOO_DATA_DIR), the one explicit download, no network."""

import dataclasses
import gzip
import hashlib
import importlib
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from archzoo.cli import main
from archzoo.data import (
    DatasetUnavailable,
    TextData,
    dataset_info,
    fetch_dataset,
    list_datasets,
    load_dataset,
    register_dataset,
    search_dirs,
)
from archzoo.data import registry as data_registry
from archzoo.registry import Table

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_mnist_gz(folder, n_train=12, n_test=5):
    """The four gzipped IDX files of a tiny MNIST in `folder`."""
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10,
              rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10)
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in zip(IDX_FILES, arrays):
        raw = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(">u1").tobytes()
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
    return folder


@pytest.fixture
def table(monkeypatch):
    """The dataset table, restored after the test."""
    fresh = Table("dataset")
    fresh.update(data_registry._DATASETS)
    monkeypatch.setattr(data_registry, "_DATASETS", fresh)
    return fresh


# --- where files are looked for -----------------------------------------------------------------------

def test_the_cache_is_searched_by_default_and_never_when_archzoo_data_dir_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("ARCHZOO_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_mnist_gz(tmp_path / "cache" / "archzoo" / "mnist")
    assert len(load_dataset("mnist").train) == 12
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DatasetUnavailable, match=r"mnist not found \(looked in [^,]*/empty/mnist\)"):
        load_dataset("mnist")
    write_mnist_gz(tmp_path / "mine" / "mnist", n_train=7)
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path / "mine"))
    assert len(load_dataset("mnist").train) == 7


def test_archzoo_data_dir_replaces_the_system_folder_but_not_an_explicit_data_dir(tmp_path, monkeypatch):
    source = dataset_info("fashion-mnist").source
    monkeypatch.delenv("ARCHZOO_DATA_DIR", raising=False)
    assert "/usr/share/datasets/fashion-mnist" in map(str, search_dirs("fashion-mnist", source))
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path))
    assert search_dirs("fashion-mnist", source, data_dir="mine") == [Path("mine"), Path("mine/fashion-mnist"),
                                                                      tmp_path / "fashion-mnist"]


def test_loaders_never_download(tmp_path, monkeypatch):
    def no_download(*args, **kw):
        raise AssertionError("a loader tried to download")

    monkeypatch.setattr("urllib.request.urlopen", no_download)
    monkeypatch.setattr(importlib.import_module("archzoo.data.download"), "download", no_download)
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path))
    for name in ("fashion-mnist", "mnist", "cifar10"):
        with pytest.raises(DatasetUnavailable, match=f"archzoo data fetch {name}"):
            load_dataset(name)
    assert list(tmp_path.iterdir()) == []


# --- the one explicit download ------------------------------------------------------------------------

def mirror_of_mnist(tmp_path, table):
    """Point mnist's fetch at a file:// mirror of a tiny MNIST (its checksums included)."""
    mirror = write_mnist_gz(tmp_path / "mirror")
    info = table["mnist"]
    files = {f: hashlib.sha256((mirror / f).read_bytes()).hexdigest() for f in info.source.files}
    table["mnist"] = dataclasses.replace(info, source=dataclasses.replace(
        info.source, files=files, mirrors=(mirror.as_uri() + "/",)))
    return mirror


def test_data_fetch_downloads_with_checksums_into_archzoo_data_dir(tmp_path, monkeypatch, table, capsys):
    mirror = mirror_of_mnist(tmp_path, table)
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path / "data"))
    assert main(["data", "fetch", "mnist"]) == 0
    out = capsys.readouterr()
    assert f"from {mirror.as_uri()}/, SHA-256 checked" in out.out
    assert f"downloading {mirror.as_uri()}/t10k-labels-idx1-ubyte.gz" in out.err
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(f + ".gz" for f in IDX_FILES)
    assert len(load_dataset("mnist").train) == 12


def test_a_fetch_with_a_wrong_checksum_keeps_nothing(tmp_path, monkeypatch, table):
    mirror_of_mnist(tmp_path, table)
    info = table["mnist"]
    files = dict(info.source.files, **{"t10k-images-idx3-ubyte.gz": "0" * 64})
    table["mnist"] = dataclasses.replace(info, source=dataclasses.replace(info.source, files=files))
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ValueError, match="checksum mismatch"):
        fetch_dataset("mnist")
    assert not (tmp_path / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").exists()
    with pytest.raises(DatasetUnavailable):
        load_dataset("mnist")


def test_data_where_lists_the_folders_and_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path))
    assert main(["data", "where", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert f"  {tmp_path / 'fashion-mnist'}\n" in out and "/usr/share" not in out
    assert "not found. To get it: `make data`" in out
    write_mnist_gz(tmp_path / "mnist")
    assert main(["data", "where", "mnist"]) == 0
    assert f"{tmp_path / 'mnist'}   <- found here" in capsys.readouterr().out


def test_data_list_shows_every_dataset_and_whether_it_is_present(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path))
    write_mnist_gz(tmp_path / "mnist")
    assert main(["data", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(list_datasets()) <= set(rows)
    assert "present: " + str(tmp_path / "mnist") in rows["mnist"] and " missing " in rows["fashion-mnist"]
    assert "always available" in rows["digits"] and "always available" in rows["listops"]


@pytest.mark.parametrize("argv, message", [(["data", "fetch", "digits"], "needs no files"),
                                           (["data", "where"], "needs a dataset name"),
                                           (["data", "where", "fashion_mnist"], "did you mean 'fashion-mnist'")])
def test_data_command_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --- the table ----------------------------------------------------------------------------------------

def test_a_registered_dataset_loads_by_name_with_its_options(table):
    def make_ramp(n: int = 3):
        return list(range(n))

    register_dataset("ramp", make_ramp, kind="toy", description="0, 1, ..., n-1")
    assert "ramp" in list_datasets() and dataset_info("ramp").kind == "toy"
    assert load_dataset("ramp", n=4) == [0, 1, 2, 3]
    register_dataset("ramp", make_ramp, kind="toy", description="0, 1, ..., n-1")      # the same loader again
    with pytest.raises(ValueError, match="'ramp' is registered twice"):
        register_dataset("ramp", lambda: [], kind="toy", description="another")
    with pytest.raises(ValueError, match="takes no option"):
        load_dataset("ramp", m=4)
    with pytest.raises(ValueError, match="needs a name, a kind and a description"):
        register_dataset("blank", make_ramp, kind="", description="")


def test_paths_still_load_beside_the_table(tmp_path):
    (tmp_path / "notes.txt").write_text("hello world, " * 20)
    assert isinstance(load_dataset(tmp_path / "notes.txt"), TextData)
    assert isinstance(load_dataset("notes.txt", data_dir=tmp_path), TextData)


# --- no network in tests ------------------------------------------------------------------------------

def test_the_test_suite_refuses_network_connections():
    # NetworkUsedInTest (tests/conftest.py), a RuntimeError: not an OSError that a retry loop would swallow
    with pytest.raises(RuntimeError, match="a test tried to reach 192.0.2.1:80"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(RuntimeError, match="a test tried to look up 'example.org'"):
        socket.getaddrinfo("example.org", 443)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(RuntimeError, match="198.51.100.7"):
        s.sendto(b"x", ("198.51.100.7", 53))


def test_the_loopback_stays_open():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5) as client, server.accept()[0] as peer:
            client.sendall(b"ping")
            assert peer.recv(4) == b"ping"
        with socket.create_connection(("localhost", server.getsockname()[1]), timeout=5):
            pass
