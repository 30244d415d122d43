import gzip
import os
import pickle
import re
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from archzoo.data import (
    DatasetUnavailable,
    ImageData,
    dataset_info,
    list_datasets,
    load_dataset,
    load_image_folder,
    locate,
)
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


def test_labels_out_of_range_name_the_file_and_the_value(tmp_path):
    write_mnist_like(tmp_path / "mnist")
    labels = np.arange(12) % 10
    labels[7] = 200
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", labels, gz=True)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: label 200 out of range for 10 classes"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_images_that_are_not_bytes_or_counts_that_differ_name_the_files(tmp_path):
    write_mnist_like(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28)), type_code=0x0D,
              big_endian_dtype=">f4", gz=True)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: expected images .* unsigned bytes"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28)), gz=True)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz holds 4 images but .*t10k-labels.* holds 5"):
        load_dataset("mnist", data_dir=tmp_path)


def test_an_empty_idx_file_names_itself(tmp_path):
    write_mnist_like(tmp_path / "mnist", gz=False)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: not an IDX file"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_fashion_mnist_says_how_to_get_it_and_downloads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHZOO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "empty")
    message = str(e.value)
    assert "\n" not in message
    assert f"looked in {tmp_path / 'empty'}, {tmp_path / 'empty' / 'fashion-mnist'}, " \
           f"{tmp_path / 'data' / 'fashion-mnist'})" in message
    assert re.search(r"make data.*apt-get install dataset-fashion-mnist.*archzoo data fetch fashion-mnist.*"
                     r"--data-dir", message)
    assert list(tmp_path.iterdir()) == []                           # nothing downloaded, no folder created


def test_fashion_mnist_when_installed():
    try:
        locate("fashion-mnist", dataset_info("fashion-mnist").source)
    except DatasetUnavailable:
        pytest.skip("Fashion-MNIST is not installed (`make data`)")
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
    with pytest.raises(ValueError, match="data_batch_1: not a CIFAR python batch .*refusing to load posix.mkdir"):
        read_cifar_batch(tmp_path / "data_batch_1")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not_a_dict"])
def test_a_damaged_cifar_batch_names_the_file(tmp_path, damage):
    write_cifar_like(tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": bytes(range(256)) * 8, "empty": b"",
                      "not_a_dict": pickle.dumps([1, 2, 3], protocol=2)}[damage])
    with pytest.raises(ValueError, match=r"cifar-10-batches-py/data_batch_3: not a CIFAR python batch"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_labels_out_of_range_and_missing_keys_name_the_file(tmp_path):
    write_cifar_like(tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    py2_dump({b"labels": [0, 1, 200, 3], b"data": np.zeros((4, 3072), dtype=np.uint8)}, path)
    with pytest.raises(ValueError, match=r"test_batch: label 200 out of range for 10 classes"):
        load_dataset("cifar10", data_dir=tmp_path)
    py2_dump({b"labels": [0, 1, 2, 3]}, path)
    with pytest.raises(ValueError, match=r"test_batch: expected a batch with 'data' and 'labels'"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("where", ["parent", "folder"])
def test_cifar10_loads_channels_first_from_data_dir(tmp_path, where):
    batches = write_cifar_like(tmp_path / "cifar-10-batches-py")
    d = load_dataset("cifar10", data_dir=tmp_path if where == "parent" else tmp_path / "cifar-10-batches-py")
    x, y = d.train.tensors
    assert x.shape == (20, 3, 32, 32) and len(d.test) == 4 and (d.in_chans, d.img_size) == (3, 32)
    data = batches["data_batch_1"][0]
    assert x[1, 2, 5, 7] == data[1, 2 * 1024 + 5 * 32 + 7] / 255                # R, G, B planes, row-major
    assert y[4:8].tolist() == batches["data_batch_2"][1] and d.classes[1] == "automobile"


def test_cifar10_reads_the_archive_in_memory_and_writes_nothing(tmp_path, monkeypatch):
    write_cifar_like(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = load_dataset("cifar10", data_dir=tmp_path / "data")
    assert len(d.train) == 20 and d.classes[9] == "truck"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cifar-10-python.tar.gz"]


def test_a_damaged_cifar_archive_names_the_file(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz: not a readable tar.gz archive"):
        load_dataset("cifar10", data_dir=tmp_path)


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


def test_a_corrupt_image_in_a_folder_names_the_file(tmp_path):
    from skimage.io import imsave

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        imsave(tmp_path / "imgs" / cls / "0.png", np.zeros((8, 8), dtype=np.uint8), check_contrast=False)
    (tmp_path / "imgs" / "b" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(ValueError, match=r"imgs/b/1.png: not a readable image"):
        load_dataset(tmp_path / "imgs")


def test_grey_images_with_alpha_load_as_grey(tmp_path):
    from skimage.io import imsave

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        la = np.stack([np.full((8, 8), 64 if cls == "a" else 192, np.uint8), np.full((8, 8), 255, np.uint8)], -1)
        imsave(tmp_path / "imgs" / cls / "0.png", la, check_contrast=False)
        imsave(tmp_path / "imgs" / cls / "1.png", la, check_contrast=False)
    d = load_dataset(tmp_path / "imgs", img_size=4)
    x = torch.cat([d.train.tensors[0], d.test.tensors[0]])
    assert d.in_chans == 1 and sorted({round(v, 2) for v in x.flatten().tolist()}) == [0.25, 0.75]


def test_unknown_dataset_suggests_close_names_and_separates_the_known_ones():
    assert {"digits", "fashion-mnist", "mnist", "cifar10", "pydoc", "listops"} <= set(list_datasets())
    with pytest.raises(ValueError, match=r"'fashion_mnist' \(did you mean 'fashion-mnist'\?\)\. Known: "):
        load_dataset("fashion_mnist")
    with pytest.raises(ValueError, match=r"unknown dataset 'qwertyuiop'\. Known: digits, "):
        load_dataset("qwertyuiop")
    with pytest.raises(ValueError, match=r"nope/text.txt: no such file or folder"):
        load_dataset("nope/text.txt")


def test_options_a_loader_does_not_take_are_refused_by_name():
    refused = r"'digits' takes no option\(s\) \['bogus'\]; it takes \['test_size', 'seed'\]"
    with pytest.raises(ValueError, match=refused):
        load_dataset("digits", bogus=1)


def test_validation_split_holds_out_other_training_images():
    x, y = torch.arange(60.0).reshape(60, 1, 1, 1), torch.arange(60) % 3
    data = ImageData("toy", TensorDataset(x, y), TensorDataset(x[:9], y[:9]), 3, ["a", "b", "c"], 1, 1)
    train_data, val = data.validation_split(n_train=20, n_val=10, n_test=5)
    seen, held_out = set(train_data.train.tensors[0].flatten().tolist()), set(val.test.tensors[0].flatten().tolist())
    assert len(seen) == 20 and len(held_out) == 10 and not seen & held_out
    assert len(train_data.test) == 5 and val.train is train_data.train
