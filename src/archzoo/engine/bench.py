"""Benchmarks: forward+backward time and peak memory, measured the same way for every module.

    rows = bench_module(lambda n: Linformer(64, seq_len=n), lambda n: (torch.randn(2, n, 64),),
                        sizes=[256, 512, 1024], reference=lambda n: FullAttention(64), name="linformer",
                        ref_name="full")
    print(format_table(rows, ["method", "size", "time_ms", "peak_mb", "ratio"]))
    loglog_slope([r["size"] for r in rows if r["method"] == "linformer"], [...])   # ~1 for linear cost

Each row is one (method, size): `time_ms` is the median over `repeats` timed iterations after `warmup`
untimed ones, `time_iqr_ms` and `time_min_ms` its spread, `peak_mb` the peak memory of one iteration
(see `peak_memory`), and, on our rows when a reference is given, `ratio` = our median / the reference's.
A size that runs out of memory or fails gets `{"error": "OOM"}` (or the error's text) and the run goes on.

Suites registered with `@register_bench(name)` run with `archzoo bench <name>` and write their
tables into `docs/benchmarks.md` with `write_section`.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..fileio import atomic_write
from ..registry import register_bench, repo_root

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
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        _step(module, inputs, backward)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


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


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`x` on `device`, still a leaf (so its `.grad` is filled) when it requires grad."""
    return x if x.device == device else x.detach().to(device).requires_grad_(x.requires_grad)


def _build(make: Callable | nn.Module, size, device: torch.device) -> nn.Module:
    module = make if isinstance(make, nn.Module) else make(size)
    return module.to(device)


def _measure(module: nn.Module, inputs: tuple, *, device, repeats, warmup, backward) -> dict:
    times = np.array(time_step(module, inputs, repeats=repeats, warmup=warmup, backward=backward, device=device))
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    peak = peak_memory(module, inputs, backward=backward, device=device)
    return {"time_ms": float(median), "time_iqr_ms": float(q3 - q1), "time_min_ms": float(times.min()),
            "peak_mb": peak / MiB}


def _bench_size(methods: list, make_inputs: Callable, size, device: torch.device, **measure_kw) -> list[dict]:
    """One row per method at one size, all on the same inputs; a failure (OOM included) is that row's error."""
    rows = [{"method": method, "size": size} for method, _ in methods]
    try:
        inputs = make_inputs(size)
        inputs = tuple(_to_device(x, device) for x in (inputs if isinstance(inputs, (tuple, list)) else (inputs,)))
    except Exception as e:
        return [{**row, "error": _error(e)} for row in rows]
    for row, (_, make) in zip(rows, methods):
        try:
            row.update(_measure(_build(make, size, device), inputs, device=device, **measure_kw))
        except Exception as e:
            row["error"] = _error(e)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def bench_module(make_module: Callable | nn.Module, make_inputs: Callable, sizes: Sequence, *,
                 device: str | torch.device = "cpu", repeats: int = 10, warmup: int = 3, backward: bool = True,
                 reference: Callable | nn.Module | None = None, name: str = "ours",
                 ref_name: str = "reference") -> list[dict]:
    """Time forward+backward and measure peak memory of `make_module(size)` on `make_inputs(size)` per size.

    `make_module` and `reference` are factories `size -> nn.Module` or fixed modules; `make_inputs(size)`
    returns a tensor or a tuple of tensors, moved to `device` and shared by both methods. Returns one
    row per (method, size): `{"method", "size", "time_ms", "time_iqr_ms", "time_min_ms", "peak_mb"}`,
    plus `ratio` (ours / reference median time) on our rows, or `{"method", "size", "error"}`.
    `backward=False` times the forward alone, under `torch.no_grad()`.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = torch.device(device)
    methods = [(name, make_module)] + ([(ref_name, reference)] if reference is not None else [])
    rows = []
    for size in sizes:
        size_rows = _bench_size(methods, make_inputs, size, device, repeats=repeats, warmup=warmup,
                                backward=backward)
        if reference is not None and all("time_ms" in r for r in size_rows):
            size_rows[0]["ratio"] = size_rows[0]["time_ms"] / size_rows[1]["time_ms"]
        rows += size_rows
    return rows


# ----------------------------------------------------------------------------- analysis and output


def loglog_slope(sizes: Sequence[float], values: Sequence[float], min_size: float | None = None) -> float:
    """Least-squares slope of log(value) against log(size): the empirical exponent of the cost.

    Sizes below `min_size` and missing or non-positive values (failed sizes) are left out.
    """
    pairs = [(s, v) for s, v in zip(sizes, values, strict=True)
             if (min_size is None or s >= min_size) and v is not None and math.isfinite(v) and v > 0]
    if len({s for s, _ in pairs}) < 2:
        raise ValueError(f"a slope needs values at two sizes or more, got {pairs}")
    x, y = np.log(np.array(pairs, dtype=float)).T
    return float(np.polyfit(x, y, 1)[0])


def method_slopes(rows: Sequence[dict], methods: Sequence[str] | None = None,
                  keys: Sequence[str] = ("time_ms", "peak_mb"), min_size: float | None = None) -> dict:
    """{method: {key: log-log slope against size}} of `bench_module` rows (default: every method, in order)."""
    methods = list(dict.fromkeys(r["method"] for r in rows)) if methods is None else methods
    return {m: {key: loglog_slope([r["size"] for r in rows if r["method"] == m],
                                  [r.get(key) for r in rows if r["method"] == m], min_size=min_size)
                for key in keys} for m in methods}


def plot_cost_panels(rows: Sequence[dict], slopes: dict, *, xlabel: str, title: str, guides: Sequence[float] = ()):
    """Time and peak memory against size (log-log) side by side, a line per method of `slopes` labelled with its
    slope; `guides` exponents (e.g. 1.5, 2) drawn through the first method's first point. Returns the figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    for ax, key, label in zip(fig.subplots(1, 2), ("time_ms", "peak_mb"),
                              ("forward+backward time (ms)", "peak memory (MiB)")):
        for m in slopes:
            points = [(r["size"], r[key]) for r in rows if r["method"] == m and r.get(key)]
            ax.plot(*zip(*points), marker="o", label=f"{m} (slope {slopes[m][key]:.2f})")
        if guides:
            n0, y0 = next((r["size"], r[key]) for r in rows if r["method"] == next(iter(slopes)) and r.get(key))
            n = np.array(sorted({r["size"] for r in rows}), float)
            for g, style in zip(guides, (":", "--", "-.")):
                ax.plot(n, y0 * (n / n0) ** g, "k" + style, lw=1, label=f"n^{g:g}")
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A markdown table of `rows` with `columns`; a failed row shows its error where values are missing."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row[c]) if c in row else _cell(row.get("error", "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_loglog(rows: Sequence[dict], key: str, path: str | os.PathLike, title: str) -> Path:
    """Save a log-log plot of `key` (e.g. "time_ms", "peak_mb") against size, one line per method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6))
    ax = fig.subplots()
    for method in dict.fromkeys(r["method"] for r in rows):
        points = [(r["size"], r[key]) for r in rows if r["method"] == method and r.get(key, 0) > 0]
        if points:
            ax.plot(*zip(*points), marker="o", label=method)
    ax.set(xscale="log", yscale="log", xlabel="size", ylabel=key, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))
    return path


def load_note(start: float) -> str:
    """How busy the machine was: the 1-minute load average at the start of a suite (`start`) and now."""
    if not hasattr(os, "getloadavg"):
        return ""
    return (f" Machine load average {start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end "
            f"({os.cpu_count()} cores): times measured on a busy machine are inflated, ratios measured back to "
            "back less so.")


def load_now() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def default_benchmarks_path() -> Path:
    """`<checkout>/docs/benchmarks.md`, else `./docs/benchmarks.md`."""
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "docs" / "benchmarks.md"


BENCHMARKS_HEADER = """# Benchmarks

Written by `archzoo bench <suite>`: each section is replaced by the suite that owns it. Times are the
median of forward+backward steps after warm-up; memory is the peak allocated by one step beyond its
inputs and parameters (see `archzoo.engine.bench`).
"""


def write_section(path: str | os.PathLike, name: str, markdown: str) -> Path:
    """Write `markdown` between `<!-- bench:name -->` and `<!-- /bench:name -->` in `path`, atomically.

    An existing section is replaced in place, others are kept; a new one is appended; a missing file
    is created with a title.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else BENCHMARKS_HEADER
    block = f"<!-- bench:{name} -->\n{markdown.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write(path, lambda p: Path(p).write_text(text))
    return path


# ----------------------------------------------------------------------------- the "models" suite


def _create(name: str, img_size: int | None) -> nn.Module:
    """Build a preset, at `img_size` when it takes one (positional embeddings), else at its default."""
    from ..registry import create_model

    if img_size is not None:
        try:
            return create_model(name, img_size=img_size)
        except TypeError:
            pass                        # resolution-free (convolutional) presets
    return create_model(name)


_MODEL_REFERENCES: dict[str, tuple[str, Callable[..., nn.Module]]] = {}


def register_model_reference(pattern: str, ref_name: str, build: Callable[..., nn.Module]) -> None:
    """A public implementation to time beside the presets matching `pattern` (fnmatch) in `archzoo bench models`.

    `build(name, **overrides)` returns the reference module at preset `name`'s configuration, taking the same
    image batch; it imports its package inside, so an absent package raises ImportError and is skipped.
    """
    _MODEL_REFERENCES[pattern] = (ref_name, build)


def model_reference(name: str) -> tuple[str, Callable[..., nn.Module]] | None:
    import fnmatch

    return next((ref for pattern, ref in _MODEL_REFERENCES.items() if fnmatch.fnmatch(name, pattern)), None)


def _reference_for(name: str, img_size: int | None) -> tuple[str | None, nn.Module | None, str | None]:
    """(ref_name, module, note) for a preset: the module when its reference package is installed."""
    ref = model_reference(name)
    if ref is None:
        return None, None, None
    ref_name, build = ref
    try:
        return ref_name, build(name, **({} if img_size is None else {"img_size": img_size})), None
    except ImportError as e:
        return ref_name, None, f"reference `{ref_name}` not installed ({e.name or e})"


LARGE_MODEL_PARAMS = 150e6


def _bench_image_model(name: str, *, batch_size: int, img_size: int | None, device, repeats, warmup) -> dict:
    """One registered image classifier: forward+backward on a random batch of its input size, and, when one is
    registered and installed, its public reference on the same batch (`ref_ms`, `ratio` = ours / reference).

    On a CPU a model over `LARGE_MODEL_PARAMS` takes minutes a step, so it gets at most 2 timed steps after 1
    warm-up (the row's `steps` says how many were timed) and no reference beside it.
    """
    try:
        model = _create(name, img_size)
    except Exception as e:
        return {"model": name, "note": f"building it failed ({type(e).__name__}: {e})"}
    shape = getattr(model, "default_input_size", None)
    if shape is None:
        return {"model": name, "note": "no `default_input_size` (C, H, W) attribute"}
    c, h, w = shape
    h, w = (img_size, img_size) if img_size is not None else (h, w)
    params = sum(p.numel() for p in model.parameters())
    if torch.device(device).type == "cpu" and params > LARGE_MODEL_PARAMS:
        repeats, warmup = min(repeats, 2), min(warmup, 1)
        ref_name, reference, note = None, None, None
        if model_reference(name):
            note = f"no reference on a CPU above {LARGE_MODEL_PARAMS / 1e6:.0f}M parameters"
    else:
        ref_name, reference, note = _reference_for(name, img_size)
    rows = bench_module(model, lambda _: (torch.randn(batch_size, c, h, w),), [None], device=device,
                        repeats=repeats, warmup=warmup, name=name, reference=reference,
                        ref_name=ref_name or "reference")
    row = {"model": name, "params (M)": params / 1e6, "input": f"{batch_size}x{c}x{h}x{w}", "steps": repeats,
           **{k: v for k, v in rows[0].items() if k not in ("method", "size")}}
    if "time_ms" in row:
        row["images/s"] = batch_size / row["time_ms"] * 1e3
    if reference is not None:
        row.update({"reference": ref_name, "ref_ms": rows[1].get("time_ms"), "ref_mb": rows[1].get("peak_mb")})
    elif note:
        row["reference"] = note
    return row


@register_bench("models")
def bench_models(args) -> None:
    """Forward+backward time, images/s and peak memory of every registered image classifier matching `pattern`.

    `args`: `device`, `repeats`, `warmup`, `quick` (2 repeats, 1 warm-up, batch 2 at 32x32), `out`
    (docs/benchmarks.md), `pattern` (fnmatch on model names), `batch_size`, `img_size`, `family` (only that
    family's presets, written to their own section `models-<family>`).
    """
    from ..registry import get_paper, list_models, list_papers, model_paper
    from .claims import resolve_device

    quick = bool(getattr(args, "quick", False))
    repeats, warmup = (2, 1) if quick else (args.repeats, args.warmup)
    batch_size = getattr(args, "batch_size", None) or (2 if quick else 8)
    img_size = getattr(args, "img_size", None) or (32 if quick else None)
    device = resolve_device(getattr(args, "device", "cpu") or "cpu")
    load = load_now()
    family = getattr(args, "family", None)
    if family is not None:
        list_papers(family)                                   # an unknown family raises ValueError
    out = getattr(args, "out", None) or default_benchmarks_path()
    section = f"models-{family}" if family else "models"
    rows = []
    for name in list_models(getattr(args, "pattern", None) or "*"):
        if family is not None and get_paper(model_paper(name)).family != family:
            continue
        print(f"[bench models] {name}", file=sys.stderr, flush=True)
        rows.append(_bench_image_model(name, batch_size=batch_size, img_size=img_size, device=device,
                                       repeats=repeats, warmup=warmup))
        # written after every preset, so a run killed midway (out of memory) keeps the rows it measured
        write_section(out, section, _models_section(rows, family, device, repeats, warmup, quick, load))
    markdown = _models_section(rows, family, device, repeats, warmup, quick, load)
    write_section(out, section, markdown)
    print(markdown)


def _models_section(rows: list[dict], family: str | None, device, repeats: int, warmup: int, quick: bool,
                    load: float) -> str:
    measured = [r for r in rows if "note" not in r]
    skipped = [f"- `{r['model']}`: {r['note']}" for r in rows if "note" in r]
    return "\n".join([
        f"## Models{f' ({family} family)' if family else ''}",
        "",
        f"Forward+backward of a random batch on `{device}` (torch {torch.__version__}): median of {repeats} "
        f"steps after {warmup} warm-up{' (quick run)' if quick else ''}.{load_note(load)}",
        "",
        format_table(measured, ["model", "params (M)", "input", "steps", "time_ms", "images/s", "peak_mb",
                                "reference", "ref_ms", "ratio", "ref_mb"]).rstrip()
        if measured else "No registered image classifier matches.",
        *(["", "Skipped:", *skipped] if skipped else []),
    ])
