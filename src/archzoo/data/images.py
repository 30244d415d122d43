"""Image classification datasets: digits, MNIST, Fashion-MNIST, CIFAR-10 and the user's own image folders.

Every loader returns an `ImageData` whose train and test sets hold float32 images `(N, C, H, W)` in
[0, 1] and int64 labels. Parsed datasets are cached in memory, since claims load them many times:
each call returns a new ImageData, but the tensors are shared, so do not modify them in place.
"""

from __future__ import annotations

import functools
import os
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .download import DatasetUnavailable, cache_dir, fetch, find_dir
from .formats import read_cifar_batch, read_idx


def first(dataset: TensorDataset, n: int) -> TensorDataset:
    """The first `n` samples of a TensorDataset (all of them when it is smaller): a fixed evaluation subset."""
    return TensorDataset(*(t[:n] for t in dataset.tensors))


@dataclass
class ImageData:
    """An image classification dataset: `train`/`test` are TensorDatasets of (x float32 (N, C, H, W), y int64)."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int
    classes: list[str]
    in_chans: int
    img_size: int | tuple[int, int]

    def subset(self, n_train: int, seed: int = 0, n_test: int | None = None) -> ImageData:
        """A copy whose training set is `n_train` examples, as evenly spread over the classes as they allow.

        Each class's examples are shuffled (seeded) and dealt round-robin: every class gives its k-th
        example before any gives its (k+1)-th, so class counts differ by at most one unless a class runs
        out. The test set is unchanged, or its first `n_test` examples (a fixed evaluation subset).
        """
        x, y = self.train.tensors
        if not 0 < n_train <= len(y):
            raise ValueError(f"n_train must be in 1..{len(y)} (the training set size), got {n_train}")
        rng = np.random.default_rng(seed)
        labels = y.numpy()
        order = rng.permutation(len(labels))
        by_class = order[np.argsort(labels[order], kind="stable")]        # shuffled within each class
        starts = np.searchsorted(labels[by_class], labels[by_class])      # first slot of each class
        rank = np.empty(len(labels), dtype=np.int64)
        rank[by_class] = np.arange(len(labels)) - starts                  # position within its class
        class_order = rng.permutation(int(labels.max()) + 1)              # who goes first in each round
        keep = np.lexsort((class_order[labels], rank))[:n_train]
        keep = torch.from_numpy(np.sort(keep))
        test = self.test if n_test is None else first(self.test, n_test)
        return replace(self, train=TensorDataset(x[keep], y[keep]), test=test)

    def __repr__(self) -> str:
        shape = tuple(self.train.tensors[0].shape[1:])
        return (f"ImageData({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"num_classes={self.num_classes}, shape={shape})")


def _image_data(name, x_train, y_train, x_test, y_test, classes) -> ImageData:
    """Wrap uint8 or float arrays (N, C, H, W) as an ImageData with x in [0, 1]."""

    def to_x(a):
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.float().div_(255) if t.dtype == torch.uint8 else t.float()

    def to_y(a):
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    train, test = TensorDataset(to_x(x_train), to_y(y_train)), TensorDataset(to_x(x_test), to_y(y_test))
    _, c, h, w = train.tensors[0].shape
    return ImageData(name, train, test, len(classes), list(classes), c, h if h == w else (h, w))


# --- digits ---------------------------------------------------------------------------------------

def load_digits(test_size: int = 360, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16 scaled to [0, 1]), split stratified and seeded."""
    return replace(_digits(test_size, seed))


@functools.lru_cache(maxsize=4)
def _digits(test_size: int, seed: int) -> ImageData:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]                    # (1797, 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=test_size, stratify=d.target, random_state=seed)
    return _image_data("digits", x_tr, y_tr, x_te, y_te, [str(i) for i in range(10)])


# --- MNIST and Fashion-MNIST (IDX files) ------------------------------------------------------------

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

_IDX_SOURCES = {
    "fashion-mnist": dict(
        system_dir="/usr/share/datasets/fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        sha256=("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
        hint="on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist`; or ",
    ),
    "mnist": dict(
        system_dir=None,
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        sha256=("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        classes=tuple(str(i) for i in range(10)),
        hint="",
    ),
}


def load_idx_dataset(name: str, data_dir: str | os.PathLike | None = None) -> ImageData:
    """MNIST or Fashion-MNIST (28x28 grey, 60,000 train / 10,000 test) from IDX files.

    Looked for in `data_dir` (or `data_dir/<name>`), then the Debian folder (Fashion-MNIST), then the
    cache, else downloaded with SHA-256 checks; `DatasetUnavailable` says how to get it when all fail.
    """
    src = _IDX_SOURCES[name]
    filesets = [tuple(f + ext for f in _IDX_FILES) for ext in (".gz", "")]
    dirs = [data_dir, Path(data_dir) / name if data_dir else None, src["system_dir"], cache_dir(name)]
    folder = find_dir(filesets, dirs)
    if folder is None:
        try:
            folder = fetch(name, {f + ".gz": h for f, h in zip(_IDX_FILES, src["sha256"])}, src["mirrors"])
        except Exception as e:
            searched = ", ".join(str(d) for d in dirs if d)
            raise DatasetUnavailable(
                f"{name} not found (looked in {searched}) and the download failed ({e}). To get it: "
                f"{src['hint']}put the four IDX files ({', '.join(f + '.gz' for f in _IDX_FILES)}) from "
                f"{src['mirrors'][0]} in a folder and pass --data-dir FOLDER") from e
    return replace(_idx_dataset(name, str(folder.resolve())))


@functools.lru_cache(maxsize=4)
def _idx_dataset(name: str, folder: str) -> ImageData:
    def read(stem):
        path = Path(folder) / (stem + ".gz")
        return read_idx(path if path.is_file() else Path(folder) / stem)

    x_tr, y_tr, x_te, y_te = (read(f) for f in _IDX_FILES)
    for x, y in ((x_tr, y_tr), (x_te, y_te)):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{folder}: expected images (N, H, W) and labels (N,), got {x.shape} and {y.shape}")
    return _image_data(name, x_tr[:, None], y_tr, x_te[:, None], y_te, _IDX_SOURCES[name]["classes"])


# --- CIFAR-10 (python pickle batches) --------------------------------------------------------------

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
_CIFAR_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


def load_cifar10(data_dir: str | os.PathLike | None = None) -> ImageData:
    """CIFAR-10 (32x32 RGB, 50,000 train / 10,000 test) from the python batches.

    Looked for in `data_dir` (the `cifar-10-batches-py` folder, its parent, or a folder holding
    `cifar-10-python.tar.gz`), then the cache, else the archive is downloaded with a SHA-256 check.
    """
    parents = [Path(data_dir) if data_dir else None, cache_dir("cifar10")]
    dirs = [d / sub if d else None for d in parents for sub in ("", _CIFAR_DIR)]
    folder = find_dir([_CIFAR_FILES], dirs)
    if folder is None:
        archive = next((d / _CIFAR_ARCHIVE for d in parents if d and (d / _CIFAR_ARCHIVE).is_file()), None)
        try:
            if archive is None:
                archive = fetch("cifar10", {_CIFAR_ARCHIVE: _CIFAR_SHA256}, [_CIFAR_URL]) / _CIFAR_ARCHIVE
        except Exception as e:
            searched = ", ".join(str(d) for d in dirs if d)
            raise DatasetUnavailable(
                f"cifar10 not found (looked in {searched}) and the download failed ({e}). To get it: download "
                f"{_CIFAR_URL}{_CIFAR_ARCHIVE}, unpack it and pass --data-dir FOLDER (the {_CIFAR_DIR} folder "
                "or its parent)") from e
        folder = _extract_cifar(archive, cache_dir("cifar10") / _CIFAR_DIR)
    return replace(_cifar10(str(folder.resolve())))


def _extract_cifar(archive: Path, dest: Path) -> Path:
    """Copy the batch files out of the archive by name only, so no member path can escape `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            path = Path(member.name)
            if member.isfile() and path.parent.name == _CIFAR_DIR and path.name in _CIFAR_FILES:
                (dest / path.name).write_bytes(tar.extractfile(member).read())
    missing = [f for f in _CIFAR_FILES if not (dest / f).is_file()]
    if missing:
        raise ValueError(f"{archive}: not a CIFAR-10 python archive, {', '.join(missing)} missing")
    return dest


@functools.lru_cache(maxsize=2)
def _cifar10(folder: str) -> ImageData:
    def read(stem):
        batch = read_cifar_batch(Path(folder) / stem)
        x, y = np.asarray(batch["data"], dtype=np.uint8), np.asarray(batch["labels"], dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
            raise ValueError(f"{folder}/{stem}: expected data (N, 3072) and labels (N,), got {x.shape}, {y.shape}")
        return x.reshape(-1, 3, 32, 32), y                              # rows are R(1024) G(1024) B(1024)

    train = [read(f) for f in _CIFAR_FILES[:5]]
    x_te, y_te = read("test_batch")
    names = read_cifar_batch(Path(folder) / "batches.meta")["label_names"]
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return _image_data("cifar10", np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                       x_te, y_te, classes)


# --- the user's own images --------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def load_image_folder(path: str | os.PathLike, img_size: int | tuple[int, int] = 32, *, in_chans: int | None = None,
                      test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """Images in `path/<class>/*.png|jpg|...` as an ImageData, resized to `img_size`, split stratified and seeded.

    Classes are the sub-folder names in sorted order. `in_chans` is 1 (grey) or 3 (RGB); by default
    3 if any image has colour, else 1. An alpha channel is dropped.
    """
    from skimage.io import imread
    from skimage.util import img_as_float32
    from sklearn.model_selection import train_test_split

    root = Path(path)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())
             if f.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(f"{root}: expected images in {root}/<class>/*.png (or {', '.join(IMAGE_EXTENSIONS)}), "
                         "found none")
    images = [img_as_float32(imread(f)) for f, _ in files]
    if in_chans is None:
        in_chans = 3 if any(im.ndim == 3 for im in images) else 1
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    x = np.stack([_to_chw(im, size, in_chans) for im in images])
    y = np.array([label for _, label in files])
    n_test = int(np.ceil(test_fraction * len(y)))
    balanced = np.bincount(y).min() >= 2 and len(classes) <= n_test <= len(y) - len(classes)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=n_test, stratify=y if balanced else None,
                                              random_state=seed)
    return _image_data(root.name, x_tr, y_tr, x_te, y_te, classes)


def _to_chw(im: np.ndarray, size: tuple[int, int], in_chans: int) -> np.ndarray:
    """A float image (H, W) or (H, W, 3|4) as (in_chans, *size) in [0, 1]; alpha is dropped."""
    from skimage.color import gray2rgb, rgb2gray
    from skimage.transform import resize

    if im.ndim == 3:
        im = im[..., :3]
        im = rgb2gray(im) if in_chans == 1 else im
    elif in_chans == 3:
        im = gray2rgb(im)
    im = resize(im, size, anti_aliasing=True).reshape(*size, in_chans)
    return np.clip(im, 0, 1).astype(np.float32).transpose(2, 0, 1)
