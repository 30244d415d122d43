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

from .formats import parse_cifar_batch, read_idx
from .registry import FileSource, register_dataset


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

    def validation_split(self, n_train: int, n_val: int, n_test: int | None = None,
                         seed: int = 0) -> tuple[ImageData, ImageData]:
        """(data, val): `n_train` training images, and `val`, the same data with `n_val` other training images as
        its test set, for choosing hyper-parameters without the test set. Both are drawn from one class-balanced
        `subset(n_train + n_val)` and split by a seeded shuffle; the test set as in `subset`."""
        pool = self.subset(min(n_train + n_val, len(self.train)), seed=seed, n_test=n_test)
        order = torch.randperm(len(pool.train), generator=torch.Generator().manual_seed(seed))
        x, y = pool.train.tensors
        train = TensorDataset(x[order[:n_train]], y[order[:n_train]])
        val = TensorDataset(x[order[n_train:]], y[order[n_train:]])
        return replace(pool, train=train), replace(pool, train=train, test=val)

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
_IDX_FILESETS = tuple(tuple(f + ext for f in _IDX_FILES) for ext in (".gz", ""))


def _idx_source(sha256: tuple[str, ...], mirrors: tuple[str, ...], **kw) -> FileSource:
    """The four IDX files, gzipped or raw; a fetch downloads the gzipped ones and checks their SHA-256."""
    return FileSource(filesets=_IDX_FILESETS, files=dict(zip((f + ".gz" for f in _IDX_FILES), sha256)),
                      mirrors=mirrors, **kw)


FASHION_MNIST = _idx_source(
    ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
     "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
     "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
     "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    system_dirs=("/usr/share/datasets/fashion-mnist",),                 # Debian's dataset-fashion-mnist
    how_to_get="`make data`, or `sudo apt-get install dataset-fashion-mnist` on Debian/Ubuntu",
)
MNIST = _idx_source(
    ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
     "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
     "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
)
_IDX_CLASSES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "mnist": tuple(str(i) for i in range(10)),
}


def load_idx_folder(name: str, folder: str | os.PathLike) -> ImageData:
    """MNIST or Fashion-MNIST (28x28 grey, 60,000 train / 10,000 test) from the four IDX files in `folder`.

    Images must be unsigned bytes and labels integers in 0..9; a file that is not raises `ValueError`
    naming it.
    """
    return replace(_idx_dataset(name, str(Path(folder).resolve())))


@functools.lru_cache(maxsize=4)
def _idx_dataset(name: str, folder: str) -> ImageData:
    classes = _IDX_CLASSES[name]

    def read(stem):
        path = Path(folder) / (stem + ".gz")
        path = path if path.is_file() else Path(folder) / stem
        return path, read_idx(path)

    (px_tr, x_tr), (py_tr, y_tr), (px_te, x_te), (py_te, y_te) = (read(f) for f in _IDX_FILES)
    for (px, x), (py, y) in (((px_tr, x_tr), (py_tr, y_tr)), ((px_te, x_te), (py_te, y_te))):
        if x.ndim != 3 or x.dtype != np.uint8:
            raise ValueError(f"{px}: expected images (N, H, W) of unsigned bytes, got {x.shape} of {x.dtype}")
        check_labels(py, y, len(classes))
        if len(x) != len(y):
            raise ValueError(f"{px} holds {len(x)} images but {py} holds {len(y)} labels")
    return _image_data(name, x_tr[:, None], y_tr, x_te[:, None], y_te, classes)


def check_labels(where: str | os.PathLike, y: np.ndarray, num_classes: int) -> None:
    """Labels read from `where` must be a 1-D integer array in 0..num_classes-1; else `ValueError` naming the file."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: expected labels (N,) of integers, got {y.shape} of {y.dtype}")
    bad = y[(y < 0) | (y >= num_classes)]
    if bad.size:
        raise ValueError(f"{where}: label {int(bad[0])} out of range for {num_classes} classes "
                         f"(expected 0..{num_classes - 1}; {bad.size} such labels)")


# --- CIFAR-10 (python pickle batches) --------------------------------------------------------------

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"

CIFAR10 = FileSource(
    filesets=(_CIFAR_FILES, tuple(f"{_CIFAR_DIR}/{f}" for f in _CIFAR_FILES), (_CIFAR_ARCHIVE,)),
    files={_CIFAR_ARCHIVE: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
)


def load_cifar10_folder(folder: str | os.PathLike) -> ImageData:
    """CIFAR-10 (32x32 RGB, 50,000 train / 10,000 test) from `folder`: its python batches, the same in
    `folder/cifar-10-batches-py`, or `folder/cifar-10-python.tar.gz` (read in memory, never unpacked)."""
    return replace(_cifar10(str(Path(folder).resolve())))


def _cifar_batches(folder: Path) -> dict[str, tuple[str, bytes]]:
    """{batch name: (where it was read, its bytes)} from the batch files or from the archive."""
    for sub in (folder, folder / _CIFAR_DIR):
        if all((sub / f).is_file() for f in _CIFAR_FILES):
            return {f: (str(sub / f), (sub / f).read_bytes()) for f in _CIFAR_FILES}
    archive = folder / _CIFAR_ARCHIVE
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers()
                       if m.isfile() and Path(m.name).parent.name == _CIFAR_DIR and Path(m.name).name in _CIFAR_FILES}
            batches = {f: (f"{archive}:{m.name}", tar.extractfile(m).read()) for f, m in members.items()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"{archive}: not a readable tar.gz archive ({e})") from e
    missing = [f for f in _CIFAR_FILES if f not in batches]
    if missing:
        raise ValueError(f"{archive}: not a CIFAR-10 python archive, {', '.join(missing)} missing")
    return batches


@functools.lru_cache(maxsize=2)
def _cifar10(folder: str) -> ImageData:
    batches = _cifar_batches(Path(folder))
    meta_where, meta_raw = batches["batches.meta"]
    names = parse_cifar_batch(meta_raw, meta_where).get("label_names")
    if not isinstance(names, list) or not names:
        raise ValueError(f"{meta_where}: expected a list of label_names, got {type(names).__name__}")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def read(stem):
        where, raw = batches[stem]
        batch = parse_cifar_batch(raw, where)
        if "data" not in batch or "labels" not in batch:
            raise ValueError(f"{where}: expected a batch with 'data' and 'labels', got keys {sorted(batch)}")
        x, y = np.asarray(batch["data"]), np.asarray(batch["labels"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
            raise ValueError(f"{where}: expected data (N, 3072) of unsigned bytes and labels (N,), got {x.shape} "
                             f"of {x.dtype} and {y.shape}")
        check_labels(where, y, len(classes))
        return x.reshape(-1, 3, 32, 32), y                              # rows are R(1024) G(1024) B(1024)

    train = [read(f) for f in _CIFAR_FILES[:5]]
    x_te, y_te = read("test_batch")
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
    from skimage.util import img_as_float32
    from sklearn.model_selection import train_test_split

    root = Path(path)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())
             if f.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(f"{root}: expected images in {root}/<class>/*.png (or {', '.join(IMAGE_EXTENSIONS)}), "
                         "found none")
    images = [img_as_float32(_read_image(f)) for f, _ in files]
    if in_chans is None:
        in_chans = 3 if any(im.ndim == 3 and im.shape[-1] >= 3 for im in images) else 1
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


def _read_image(path: Path) -> np.ndarray:
    """One image file as an array; a file that is not a readable image raises `ValueError` naming it."""
    from skimage.io import imread

    try:
        return imread(path)
    except Exception as e:  # the image plug-ins raise many kinds (SyntaxError, OSError, ValueError...) on bad bytes
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


def _to_chw(im: np.ndarray, size: tuple[int, int], in_chans: int) -> np.ndarray:
    """A float image (H, W), (H, W, 2) (grey + alpha) or (H, W, 3|4) as (in_chans, *size) in [0, 1]; alpha is
    dropped."""
    from skimage.color import gray2rgb, rgb2gray
    from skimage.transform import resize

    if im.ndim == 3 and im.shape[-1] <= 2:
        im = im[..., 0]
    if im.ndim == 3:
        im = im[..., :3]
        im = rgb2gray(im) if in_chans == 1 else im
    elif in_chans == 3:
        im = gray2rgb(im)
    im = resize(im, size, anti_aliasing=True).reshape(*size, in_chans)
    return np.clip(im, 0, 1).astype(np.float32).transpose(2, 0, 1)


register_dataset("digits", load_digits, kind="image",
                 description="scikit-learn's 1,797 handwritten 8x8 digits, 10 classes (ships with scikit-learn)")
register_dataset("fashion-mnist", functools.partial(load_idx_folder, "fashion-mnist"), kind="image",
                 description="Zalando's 70,000 28x28 grey images of clothes, 10 classes", source=FASHION_MNIST)
register_dataset("mnist", functools.partial(load_idx_folder, "mnist"), kind="image",
                 description="LeCun's 70,000 28x28 handwritten digits, 10 classes", source=MNIST)
register_dataset("cifar10", load_cifar10_folder, kind="image",
                 description="60,000 32x32 colour images, 10 classes (the python batches)", source=CIFAR10)
