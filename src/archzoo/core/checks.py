"""Input checks that fail early with a message a user understands.

    dims = check_shape(x, "B C H W", C=3)        # {"B": 2, "C": 3, "H": 32, "W": 32}

A pattern names one dimension per word; `...` matches zero or more dimensions.
Keyword arguments fix the size of named dimensions (None leaves one free); a
name used twice must bind the same size both times.

Real-valued inputs (images, signals, point clouds) follow one dtype rule, decided here for every model:

    x = check_image(x, self, C=3)                # (B, 3, H, W), cast to the dtype of self's parameters
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

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


def cast_floating(t: Tensor | None, dtype: torch.dtype | None) -> Tensor | None:
    """`t` in `dtype` (a layer's parameter dtype) when it is floating point, so that a float64 or float16 input runs a
    float32 layer as a float32 input does. Unchanged: None, non-floating tensors, `dtype=None`, and any tensor under
    autocast, which picks each op's dtype itself."""
    if (t is None or dtype is None or not t.is_floating_point() or t.dtype == dtype
            or torch.is_autocast_enabled(t.device.type)):
        return t
    return t.to(dtype)


def as_model_dtype(x: Tensor, module: nn.Module, name: str = "input") -> Tensor:
    """The dtype rule for real-valued inputs: a floating tensor is cast to the dtype of `module`'s parameters
    (float64 or float16 into a float32 model); an integer, bool or complex tensor is a `ValueError`.

    Integer images (uint8 pixels in [0, 255]) are refused rather than cast: their scale is not the one the model
    expects (floats in [0, 1], normalised with `pretrained_cfg["mean"]` and `["std"]`), so a silent cast would
    give a confident wrong answer.
    """
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor (an image as floats in [0, 1], normalised with "
                         f"the model's pretrained_cfg mean and std), got {x.dtype}; convert it first, e.g. "
                         f"x.float() / 255")
    param = next(module.parameters(), None)
    return cast_floating(x, None if param is None else param.dtype)


def check_image(x, module: nn.Module, name: str = "input", min_size: int = 1, max_size: int | None = None,
                **known) -> Tensor:
    """`check_shape(x, "B C H W", **known)`, the side limits `min_size` <= H, W <= `max_size` and
    `as_model_dtype`: the checked image batch (B, C, H, W) in the dtype of `module`'s parameters.

    A model whose layers need a minimum resolution (a pooling window, a span of relative positions) names it here,
    so that a too small image fails with that size rather than inside a kernel.
    """
    dims = check_shape(x, "B C H W", name=name, **known)
    h, w = dims["H"], dims["W"]
    if min(h, w) < min_size or (max_size is not None and max(h, w) > max_size):
        bounds = f"at least {min_size}x{min_size}" if max_size is None else \
            f"between {min_size}x{min_size} and {max_size}x{max_size}"
        raise ValueError(f"{name}: expected images of {bounds} pixels, got {h}x{w}")
    return as_model_dtype(x, module, name)
