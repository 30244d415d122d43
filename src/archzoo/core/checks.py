"""Input checks that fail early with a message a user understands.

    dims = check_shape(x, "B C H W", C=3)        # {"B": 2, "C": 3, "H": 32, "W": 32}

A pattern names one dimension per word; `...` matches zero or more dimensions.
Keyword arguments fix the size of named dimensions (None leaves one free); a
name used twice must bind the same size both times.
"""

from __future__ import annotations

import torch

_DTYPES = {"float": torch.Tensor.is_floating_point, "complex": torch.Tensor.is_complex,
           "bool": lambda t: t.dtype == torch.bool,
           "int": lambda t: not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)}


def check_shape(x, pattern: str, name: str = "input", dtype: str | torch.dtype | None = None, **known) -> dict:
    """Check that `x` is a tensor shaped like `pattern`; return the bound sizes, e.g. `{"B": 2, "N": 16}`.

    Raises `ValueError("input: expected shape (B, C=3, H, W), got (2, 4, 32, 32)")` on a wrong rank, a wrong
    known size or inconsistent repeated names; `dtype` ("float", "int", "bool", "complex" or a torch.dtype)
    also checks the element type.
    """
    words = pattern.split()
    if words.count("...") > 1:
        raise ValueError(f"pattern {pattern!r} may contain '...' at most once")
    expected = "(" + ", ".join(w if known.get(w) is None else f"{w}={known[w]}" for w in words) + ")"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of shape {expected}, got {type(x).__name__}")
    shape = tuple(x.shape)
    got = "(" + ", ".join(map(str, shape)) + ")"
    error = ValueError(f"{name}: expected shape {expected}, got {got}")

    if "..." in words:
        i = words.index("...")
        head, tail = words[:i], words[i + 1:]
        if len(shape) < len(head) + len(tail):
            raise error
        pairs = list(zip(head, shape)) + list(zip(tail, shape[len(shape) - len(tail):]))
    elif len(shape) != len(words):
        raise error
    else:
        pairs = list(zip(words, shape))

    dims: dict[str, int] = {}
    for word, size in pairs:
        if known.get(word) not in (None, size) or dims.setdefault(word, size) != size:
            raise error
    if dtype is not None:
        ok = x.dtype == dtype if isinstance(dtype, torch.dtype) else _DTYPES[dtype](x)
        if not ok:
            raise ValueError(f"{name}: expected a {dtype} tensor, got {x.dtype}")
    return dims
