import gzip
import hashlib
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from archzoo.data import DatasetUnavailable, ImageData, list_datasets, load_dataset, load_image_folder
from archzoo.data import images as images_module
from archzoo.data.formats import read_cifar_batch, read_idx

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_idx(path, array, type_code=0x08, big_endian_dtype=">u1", gz=False):
    data = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(big_endian_dtype).tobytes()
    Path(path).write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist_like(folder, gz=True, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10,
              rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10)
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in zip(IDX_FILES, arrays):
        write_idx(folder / (name + (".gz" if gz else "")), a, gz=gz)
    return arrays


# --- digits and subsets ------------------------------------------------------------------------------

def test_digits_is_a_stratified_split_of_8x8_images_in_unit_range():
    d = load_dataset("digits", data_dir="/ignored")
    x, y = d.train.tensors
    assert x.shape == (1437, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(d.test) == 360 and (d.num_classes, d.in_chans, d.img_size) == (10, 1, 8)
    assert x.min() == 0 and x.max() == 1
    per_class = torch.bincount(torch.cat([y, d.test.tensors[1]]))
    assert (torch.bincount(d.test.tensors[1]) - 360 * per_class / 1797).abs().max() <= 1


def test_subset_is_class_balanced_seeded_and_keeps_the_test_set():
    d = load_dataset("digits")
    s = d.subset(100, seed=3)
    assert torch.bincount(s.train.tensors[1]).tolist() == [10] * 10 and s.test is d.test
    counts = torch.bincount(d.subset(25, seed=3).train.tensors[1], minlength=10)
    assert counts.sum() == 25 and counts.max() - counts.min() <= 1
    assert torch.equal(d.subset(100, seed=3).train.tensors[0], s.train.tensors[0])
    assert not torch.equal(d.subset(100, seed=4).train.tensors[0], s.train.tensors[0])
    rows = {tuple(r) for r in d.train.tensors[0].flatten(1).tolist()}
    assert all(tuple(r) in rows for r in s.train.tensors[0].flatten(1).tolist())
    with pytest.raises(ValueError, match="n_train"):
        d.subset(2000)


def test_subset_can_keep_the_first_test_examples():
    d = load_dataset("digits")
    s = d.subset(100, seed=3, n_test=50)
    assert all(torch.equal(a, b[:50]) for a, b in zip(s.test.tensors, d.test.tensors, strict=True))
    assert len(d.subset(100, n_test=10_000).test) == len(d.test)          # a smaller set is kept whole


# --- IDX: MNIST and Fashion-MNIST ------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_parser_reads_shape_and_values(tmp_path, gz):
    a = np.random.default_rng(0).integers(0, 256, (3, 4, 5))
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", a, gz=gz)), a)
    b = np.array([[1, -70000], [3, 2**30]])
    parsed = read_idx(write_idx(tmp_path / "b.idx", b, type_code=0x0C, big_endian_dtype=">i4", gz=gz))
    assert parsed.dtype == np.int32 and parsed.tolist() == b.tolist()


def test_idx_parser_refuses_bad_magic_and_wrong_length(tmp_path):
    path = write_idx(tmp_path / "a.idx", np.zeros((2, 3)))
    raw = path.read_bytes()
    path.write_bytes(b"\x00\x01" + raw[2:])
    with pytest.raises(ValueError, match="magic number 0x00010802"):
        read_idx(path)
    path.write_bytes(raw[:-1])
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*holds 5"):
        read_idx(path)
    path.write_bytes(gzip.compress(raw)[:-8])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loads_from_data_dir(tmp_path, gz):
    x_tr, y_tr, x_te, y_te = write_mnist_like(tmp_path / "mnist", gz=gz)
    d = load_dataset("mnist", data_dir=tmp_path)                      # finds data_dir/mnist
    assert isinstance(d, ImageData) and d.train.tensors[0].shape == (12, 1, 28, 28) and len(d.test) == 5
    assert torch.equal(d.train.tensors[0][:, 0], torch.from_numpy(x_tr).float() / 255)
    assert d.test.tensors[1].tolist() == y_te.tolist() and d.classes[3] == "3"


def test_mnist_downloads_into_the_cache_with_checksums(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "mirror")
    sha = tuple(hashlib.sha256((tmp_path / "mirror" / (f + ".gz")).read_bytes()).hexdigest() for f in IDX_FILES)
    monkeypatch.setitem(images_module._IDX_SOURCES["mnist"], "mirrors", ((tmp_path / "mirror").as_uri() + "/",))
    monkeypatch.setitem(images_module._IDX_SOURCES["mnist"], "sha256", sha)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = load_dataset("mnist")
    assert len(d.train) == 12 and (tmp_path / "cache" / "archzoo" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    source = images_module._IDX_SOURCES["fashion-mnist"]
    monkeypatch.setitem(source, "system_dir", str(tmp_path / "nowhere"))
    monkeypatch.setitem(source, "mirrors", ((tmp_path / "no-mirror").as_uri() + "/",))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist.*--data-dir"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "empty")
    assert not list((tmp_path / "cache" / "archzoo" / "fashion-mnist").iterdir())


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package():
    d = load_dataset("fashion-mnist")
    x, y = d.train.tensors
    assert x.shape == (60000, 1, 28, 28) and len(d.test) == 10000 and x.dtype == torch.float32
    assert x.min() == 0 and x.max() == 1 and torch.bincount(y).tolist() == [6000] * 10
    assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"


# --- CIFAR-10 -------------------------------------------------------------------------------------

class Py2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 pickled its str (BINSTRING), which is how the CIFAR batches were written."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        op = pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256 else pickle.BINSTRING + struct.pack(
            "<i", len(obj))
        self.write(op + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_dump(obj, path):
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)


def write_cifar_like(folder, n=4):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        batches[name] = (data, [(i + j) % 10 for j in range(n)])
        py2_dump({b"batch_label": name.encode(), b"labels": batches[name][1], b"data": data,
                  b"filenames": [b"img%d.png" % j for j in range(n)]}, folder / name)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    py2_dump({b"label_names": names, b"num_cases_per_batch": n, b"num_vis": 3072}, folder / "batches.meta")
    return batches


def test_cifar_batch_reader_decodes_python2_pickles(tmp_path):
    batches = write_cifar_like(tmp_path / "cifar-10-batches-py")
    batch = read_cifar_batch(tmp_path / "cifar-10-batches-py" / "data_batch_2")
    assert batch["batch_label"] == b"data_batch_2" and batch["labels"] == batches["data_batch_2"][1]
    np.testing.assert_array_equal(batch["data"], batches["data_batch_2"][0])


def test_cifar_batch_reader_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(tmp_path / "pwned"),)

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil()}, protocol=4))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.mkdir"):
        read_cifar_batch(tmp_path / "data_batch_1")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("where", ["parent", "folder"])
def test_cifar10_loads_channels_first_from_data_dir(tmp_path, where):
    batches = write_cifar_like(tmp_path / "cifar-10-batches-py")
    d = load_dataset("cifar10", data_dir=tmp_path if where == "parent" else tmp_path / "cifar-10-batches-py")
    x, y = d.train.tensors
    assert x.shape == (20, 3, 32, 32) and len(d.test) == 4 and (d.in_chans, d.img_size) == (3, 32)
    data = batches["data_batch_1"][0]
    assert x[1, 2, 5, 7] == data[1, 2 * 1024 + 5 * 32 + 7] / 255                # R, G, B planes, row-major
    assert y[4:8].tolist() == batches["data_batch_2"][1] and d.classes[1] == "automobile"


def test_cifar10_unpacks_the_archive_from_data_dir(tmp_path, monkeypatch):
    write_cifar_like(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = load_dataset("cifar10", data_dir=tmp_path)
    assert len(d.train) == 20 and (tmp_path / "cache" / "archzoo" / "cifar10" / "cifar-10-batches-py").is_dir()


# --- image folders and names --------------------------------------------------------------------

def test_image_folder_reads_grey_and_colour_images_by_class(tmp_path):
    from skimage.io import imsave

    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / "pets" / cls).mkdir(parents=True)
        for i in range(3):
            imsave(tmp_path / "pets" / cls / f"{i}.png", np.full((20, 24, 3), colour, dtype=np.uint8),
                   check_contrast=False)
        imsave(tmp_path / "pets" / cls / "grey.png", np.full((20, 24), 128, dtype=np.uint8), check_contrast=False)
    d = load_dataset(str(tmp_path / "pets"), img_size=16)
    assert d.classes == ["cats", "dogs"] and (d.in_chans, d.img_size) == (3, 16)
    assert len(d.train) + len(d.test) == 8 and sorted(torch.bincount(d.test.tensors[1]).tolist()) == [1, 1]
    x = torch.cat([d.train.tensors[0], d.test.tensors[0]])
    y = torch.cat([d.train.tensors[1], d.test.tensors[1]])
    red = x[(y == 0) & (x[:, 0, 0, 0] > 0.9)]
    assert len(red) == 3 and red[:, 1:].max() < 0.01
    grey = load_image_folder(tmp_path / "pets", img_size=(8, 12), in_chans=1)
    assert grey.train.tensors[0].shape[1:] == (1, 8, 12) and grey.img_size == (8, 12)


def test_unknown_dataset_suggests_close_names():
    assert {"digits", "fashion-mnist", "mnist", "cifar10", "pydoc", "listops"} <= set(list_datasets())
    with pytest.raises(ValueError, match="did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")
