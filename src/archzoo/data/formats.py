"""File formats of the classic image datasets: IDX (MNIST, Fashion-MNIST) and CIFAR's pickled batches.

Both readers check what they read: an IDX file's magic number, dimensions and length, and a CIFAR
batch through an unpickler that can build numpy arrays and nothing else, so a tampered batch file
cannot run code. A file that is not what it should be raises `ValueError` naming it.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

# IDX type codes (third byte of the magic number), big-endian on disk.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or raw, into a numpy array of its dims and type.

    The format (LeCun et al., MNIST): magic number `0x00 0x00 <type> <ndim>`, then `ndim` big-endian
    uint32 dimensions, then the data in row-major order. A malformed file raises `ValueError`.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt gzip stream ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"{path}: not an IDX file: magic number 0x{raw[:4].hex()}, expected 0x0000 then a type "
                         f"code in {{{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}}} and ndim >= 1")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header announces {ndim} dimensions but the file ends after {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header says shape {dims} of {dtype.name} ({expected} bytes of data), "
                         f"the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other global, so no code can run."""

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # pickles written by numpy < 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only numpy "
                                         "arrays, lists, numbers and bytes") from None


def read_cifar_batch(path: str | os.PathLike) -> dict:
    """Load one CIFAR python batch file (`data_batch_1`, `test_batch`, `batches.meta`); see `parse_cifar_batch`."""
    return parse_cifar_batch(Path(path).read_bytes(), str(path))


def parse_cifar_batch(raw: bytes, where: str) -> dict:
    """One CIFAR python batch, pickled, as a dict with str keys; `where` names it in errors.

    The batches were pickled by Python 2, so they are read with `encoding="bytes"` (keys such as
    `b"data"`, `b"labels"`); the keys are decoded here, the values are left as stored. Anything that
    is not such a dict (truncated, empty, garbage, or a pickle that asks for code) raises `ValueError`
    naming `where`; no pickled code ever runs.
    """
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # corrupt bytes make the unpickler raise nearly any kind of error
        reason = "the file is empty" if not raw else f"{type(e).__name__}: {e}"
        raise ValueError(f"{where}: not a CIFAR python batch ({reason})") from e
    if not isinstance(batch, dict):
        raise ValueError(f"{where}: not a CIFAR python batch (expected a pickled dict, got {type(batch).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
