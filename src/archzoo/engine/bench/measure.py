"""Measuring one module: forward+backward time (median over repeats) and peak memory, the same way for all.

    rows = bench_module(lambda n: Linformer(64, seq_len=n), lambda n: (torch.randn(2, n, 64),),
                        sizes=[256, 512, 1024], reference=lambda n: FullAttention(64), name="linformer",
                        ref_name="full")

Each row is one (method, size): `time_ms` is the median over `repeats` timed iterations after `warmup`
untimed ones, `time_iqr_ms` and `time_min_ms` its spread, `peak_mb` the peak memory of one iteration
(see `peak_memory`), and, on our rows when a reference is given, `ratio` = our median / the reference's.
With a reference, the timed steps alternate (ours, reference; reference, ours; ...), so that a change in the
machine's load during the run falls on both medians alike, and neither always runs right after the other.
A size that runs out of memory or fails gets `{"error": "OOM"}` (or the error's text) and the run goes on.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MiB = 2**20

# ----------------------------------------------------------------------------- one step


def _tensors(obj) -> list[torch.Tensor]:
    """The tensors in a module's output: a tensor, a tuple/list, a dict (Hugging Face outputs) or a mix."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _step(module: nn.Module, inputs: tuple, backward: bool) -> None:
    """One forward (+ backward of the sum of every differentiable output), gradients reset to None first."""
    module.zero_grad(set_to_none=True)
    for x in inputs:
        x.grad = None
    if not backward:
        with torch.no_grad():
            module(*inputs)
        return
    outs = [t for t in _tensors(module(*inputs)) if t.requires_grad]
    if not outs:
        raise ValueError("no output requires grad: give the module parameters or make make_inputs return "
                         "tensors with requires_grad=True, or pass backward=False")
    sum(t.float().sum() for t in outs).backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_step(module: nn.Module, inputs: tuple, *, repeats: int, warmup: int, backward: bool = True,
              device: torch.device | str = "cpu") -> list[float]:
    """Wall-clock milliseconds of each of `repeats` steps, after `warmup` untimed ones (device synchronized)."""
    device = torch.device(device)
    for _ in range(warmup):
        _step(module, inputs, backward)
    return [_timed_step(module, inputs, backward, device) for _ in range(repeats)]


def _timed_step(module: nn.Module, inputs: tuple, backward: bool, device: torch.device) -> float:
    """Wall-clock milliseconds of one step (device synchronized)."""
    _sync(device)
    t0 = time.perf_counter()
    _step(module, inputs, backward)
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


# ----------------------------------------------------------------------------- memory


class LiveTensorBytes(TorchDispatchMode):
    """Track the bytes of tensor storages that ops allocate while the mode is active, and their peak.

    Every op's outputs go through `__torch_dispatch__`; an output whose storage is not one of the op's
    inputs' (views and in-place ops share theirs) is a new allocation, counted until its storage is
    freed (a weakref finalizer). Tensors that existed before (inputs, parameters) are never counted,
    nor are buffers private to a kernel (e.g. a convolution's workspace): `peak` is the peak of live
    tensor bytes allocated by the traced code, activations saved for backward and gradients included.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}          # storage id -> bytes
        self.current = self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {_storage_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            key = _storage_key(t) if isinstance(t, torch.Tensor) else None
            if key is None or key in inputs or key in self.live:
                continue
            storage = t.untyped_storage()
            self.live[key] = storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._free, key)
        return out


def _storage_key(t: torch.Tensor) -> int | None:
    """An id of the tensor's storage while it lives (None for layouts without one, e.g. sparse)."""
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        return None


def peak_memory(module: nn.Module, inputs: tuple, *, backward: bool = True,
                device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated by one forward(+backward) beyond what was live before it (inputs, parameters).

    On CUDA: `torch.cuda.max_memory_allocated` minus the allocation before the step (kernel workspaces
    included). Elsewhere: the peak of live tensor bytes traced by `LiveTensorBytes`.
    """
    device = torch.device(device)
    if device.type == "cuda":
        module.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        _step(module, inputs, backward)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    module.zero_grad(set_to_none=True)
    with LiveTensorBytes() as tracker:
        _step(module, inputs, backward)
    return tracker.peak


# ----------------------------------------------------------------------------- the harness


def _error(e: BaseException) -> str:
    """"OOM" for an out-of-memory error (CUDA or CPU allocator), else the error's type and message."""
    text = str(e).lower()
    if isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in text \
            or "can't allocate memory" in text:
        return "OOM"
    return f"{type(e).__name__}: {e}"


def _to_device(x: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`x` on `device` (floating point: in `dtype` when given), still a leaf (so its `.grad` is filled) when it
    requires grad."""
    dtype = dtype if dtype is not None and x.is_floating_point() else x.dtype
    if x.device == device and x.dtype == dtype:
        return x
    return x.detach().to(device, dtype).requires_grad_(x.requires_grad)


def _build(make: Callable | nn.Module, size, device: torch.device,
           dtype: torch.dtype | None = None) -> nn.Module:
    module = make if isinstance(make, nn.Module) else make(size)
    return module.to(device) if dtype is None else module.to(device, dtype)


def _summary(times: list[float]) -> dict:
    q1, median, q3 = np.percentile(np.array(times), [25, 50, 75])
    return {"time_ms": float(median), "time_iqr_ms": float(q3 - q1), "time_min_ms": float(min(times))}


def _bench_size(methods: list, make_inputs: Callable, size, device: torch.device, *, repeats: int, warmup: int,
                backward: bool, dtype: torch.dtype | None = None) -> list[dict]:
    """One row per method at one size, all on the same inputs; a failure (OOM included) is that row's error.

    Every method is built and warmed up, then the timed steps go round the methods, one step each, in turn and in
    reverse on alternate rounds; then each method's peak memory is measured on its own."""
    rows = [{"method": method, "size": size} for method, _ in methods]
    try:
        inputs = make_inputs(size)
        inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        inputs = tuple(_to_device(x, device, dtype) for x in inputs)
    except Exception as e:
        return [{**row, "error": _error(e)} for row in rows]
    live, times = {}, {}                                   # row index -> module, timed steps
    for i, (row, (_, make)) in enumerate(zip(rows, methods)):
        try:
            live[i] = _build(make, size, device, dtype)
            time_step(live[i], inputs, repeats=0, warmup=warmup, backward=backward, device=device)
            times[i] = []
        except Exception as e:
            row["error"] = _error(e)
            live.pop(i, None)
            _free(device)
    for round_ in range(repeats):
        for i in list(live) if round_ % 2 == 0 else list(live)[::-1]:
            try:
                times[i].append(_timed_step(live[i], inputs, backward, device))
            except Exception as e:
                rows[i]["error"] = _error(e)
                del live[i]
                _free(device)
    for i, module in live.items():
        try:
            rows[i].update(_summary(times[i]))
            rows[i]["peak_mb"] = peak_memory(module, inputs, backward=backward, device=device) / MiB
        except Exception as e:
            rows[i] = {"method": rows[i]["method"], "size": size, "error": _error(e)}
    live.clear()
    _free(device)
    return rows


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_module(make_module: Callable | nn.Module, make_inputs: Callable, sizes: Sequence, *,
                 device: str | torch.device = "cpu", repeats: int = 10, warmup: int = 3, backward: bool = True,
                 reference: Callable | nn.Module | None = None, name: str = "ours",
                 ref_name: str = "reference", dtype: torch.dtype | None = None) -> list[dict]:
    """Time forward+backward and measure peak memory of `make_module(size)` on `make_inputs(size)` per size.

    `make_module` and `reference` are factories `size -> nn.Module` or fixed modules; `make_inputs(size)`
    returns a tensor or a tuple of tensors, moved to `device` and shared by both methods. Returns one
    row per (method, size): `{"method", "size", "time_ms", "time_iqr_ms", "time_min_ms", "peak_mb"}`,
    plus `ratio` (ours / reference median time) on our rows, or `{"method", "size", "error"}`.
    `backward=False` times the forward alone, under `torch.no_grad()`. `dtype` (e.g. `torch.bfloat16`) casts the
    modules and the floating-point inputs; None keeps them as built.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = torch.device(device)
    methods = [(name, make_module)] + ([(ref_name, reference)] if reference is not None else [])
    rows = []
    for size in sizes:
        size_rows = _bench_size(methods, make_inputs, size, device, repeats=repeats, warmup=warmup,
                                backward=backward, dtype=dtype)
        if reference is not None and all("time_ms" in r for r in size_rows):
            size_rows[0]["ratio"] = size_rows[0]["time_ms"] / size_rows[1]["time_ms"]
        rows += size_rows
    return rows
