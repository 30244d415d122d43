"""Character-level text: CPython's own documentation (`pydoc`) or any text file, for language modelling."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .registry import register_dataset


class CharTokenizer:
    """Characters to ids and back; the vocabulary is the sorted unique characters of the text it was built from."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        if not self.chars:
            raise ValueError("cannot build a tokenizer from empty text")
        self._codes = np.array([ord(c) for c in self.chars], dtype=np.uint32)   # sorted code points

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """`text` as a LongTensor of ids; a character outside the vocabulary raises `ValueError`."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codes, codes).clip(max=len(self._codes) - 1)
        unknown = np.flatnonzero(self._codes[ids] != codes)
        if unknown.size:
            i = int(unknown[0])
            raise ValueError(f"character {text[i]!r} (U+{ord(text[i]):04X}, position {i}) is not in the "
                             f"tokenizer's vocabulary of {self.vocab_size} characters")
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The string of a sequence of ids."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.chars[i] for i in ids)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class CharWindows(Dataset):
    """Next-character pairs from a 1-D id tensor: item i is (x, y) = (data[s:s+T], data[s+1:s+T+1]), s = i*stride.

    With the default stride T the windows do not overlap; a smaller stride gives more, overlapping,
    windows. Random access, so any sampler can shuffle it.
    """

    def __init__(self, data: torch.Tensor, block_size: int, stride: int | None = None):
        stride = block_size if stride is None else stride
        if block_size < 1 or stride < 1:
            raise ValueError(f"block_size and stride must be >= 1, got {block_size} and {stride}")
        if len(data) < block_size + 1:
            raise ValueError(f"block_size {block_size} needs at least {block_size + 1} tokens, "
                             f"the split has {len(data)}")
        self.data, self.block_size, self.stride = data, block_size, stride

    def __len__(self) -> int:
        return (len(self.data) - self.block_size - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        s = (i % len(self)) * self.stride
        chunk = self.data[s:s + self.block_size + 1]
        return chunk[:-1], chunk[1:]


@dataclass
class TextData:
    """A character-level corpus: `train` and `val` are 1-D LongTensors of ids (the first 90% and last 10%)."""

    name: str
    train: torch.Tensor
    val: torch.Tensor
    tokenizer: CharTokenizer

    def windows(self, split: str, block_size: int, stride: int | None = None) -> CharWindows:
        """The (x, y) next-character pairs of `split` ("train" or "val"); see `CharWindows`."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return CharWindows(getattr(self, split), block_size, stride)

    def __repr__(self) -> str:
        return (f"TextData({self.name!r}, train={len(self.train)}, val={len(self.val)}, "
                f"vocab_size={self.tokenizer.vocab_size})")


def pydoc_text() -> str:
    """CPython's documentation topics (`pydoc_data.topics`), about 465 kB of English, in sorted topic order."""
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics))


def load_text(source: str | os.PathLike = "pydoc", val_fraction: float = 0.1) -> TextData:
    """`"pydoc"` or the path of a UTF-8 text file as TextData; the last `val_fraction` is the validation split."""
    if str(source) == "pydoc":
        name, text = "pydoc", pydoc_text()
    else:
        path = Path(source)
        try:
            name, text = path.stem, path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e})") from e
        if not text:
            raise ValueError(f"{path}: the text file is empty, expected UTF-8 text to model")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    tokenizer = CharTokenizer(text)
    ids = tokenizer.encode(text)
    n_train = int(len(ids) * (1 - val_fraction))
    return TextData(name, ids[:n_train], ids[n_train:], tokenizer)


register_dataset("pydoc", functools.partial(load_text, "pydoc"), kind="text",
                 description="CPython's documentation topics, ~465 kB of English, character level (ships with Python)")
