"""The attention benchmark and the long-range task suite: every registered attention, measured the same way.

Each efficient-attention paper registers how to build its attention at sequence length n, and the public
reference implementation of the same method where one exists:

    register_attention_bench("linformer", kwargs=lambda n: dict(seq_len=n, k=256),
                             reference=make_reference, ref_name="linformer (pip)", linear=True)

- `archzoo bench attention`: for n = 256, 512, ..., 16384, batch 1, dim 512, 8 heads of 64, forward +
  backward, the median time and the peak memory of full attention (SDPA) and of each method, with its
  reference beside it on the same input (ratio ours / reference), and the log-log slope of time and memory
  against n from n = 1024 up.
- `archzoo bench tasks`: one small `SequenceTransformer` per attention, one budget, every generated task;
  the test accuracy table (method x task).
"""

from __future__ import annotations

import fnmatch
import re
import statistics
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...registry import get_attention, list_attentions, register_bench, table
from .analysis import method_slopes, plot_loglog
from .markdown import (
    bench_dtype,
    default_benchmarks_path,
    format_table,
    load_note,
    load_now,
    setting_flags,
    setting_suffix,
    setting_title,
    write_section,
)
from .measure import bench_module


@dataclass(frozen=True)
class AttentionBenchSpec:
    """How `archzoo bench` builds one attention at length n, and its public reference (if any)."""

    name: str
    kwargs: Callable[[int], dict]
    reference: Callable[[int, int, int, int], nn.Module] | None = None
    ref_name: str | None = None
    linear: bool = True
    task_kwargs: Callable[[int], dict] | None = None


_SPECS = table("attention benchmark")          # attention name -> AttentionBenchSpec


def register_attention_bench(name: str, *, kwargs: Callable[[int], dict] = lambda n: {},
                             reference: Callable[[int, int, int, int], nn.Module] | None = None,
                             ref_name: str | None = None, linear: bool = True,
                             task_kwargs: Callable[[int], dict] | None = None) -> AttentionBenchSpec:
    """Register the benchmark settings of the attention registered as `name`.

    `kwargs(n)`: constructor arguments besides (dim, heads, dim_head) at sequence length n.
    `reference(n, dim, heads, dim_head)`: the public implementation with the same hyper-parameters, a module
    whose `forward(x)` maps (B, N, dim) to (B, N, dim); it imports its package inside, so a missing package
    raises ImportError and the benchmark notes it. `linear`: the method claims linear cost in n.
    `task_kwargs(n)`: the settings in the small model of `archzoo bench tasks` (4 heads of 16) where they differ
    from the benchmark's (8 heads of 64), e.g. fewer random features for the smaller heads; default `kwargs`.
    """
    if reference is not None and not ref_name:
        raise ValueError(f"register_attention_bench({name!r}): a reference needs a ref_name")
    spec = AttentionBenchSpec(name, kwargs, reference, ref_name, linear, task_kwargs)
    _SPECS[name] = spec
    return spec


class SDPALayer(nn.Module):
    """The reference of full attention: the four projections around `F.scaled_dot_product_attention` and nothing
    else (no input checks, no masks). On CUDA in half precision it is pinned to the flash kernel."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, heads * dim_head, bias=False) for _ in range(3))
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                    # (B, N, dim)
        q, k, v = (rearrange(f(x), "b n (h d) -> b h n d", h=self.heads) for f in (self.to_q, self.to_k, self.to_v))
        flash = x.is_cuda and x.dtype in (torch.float16, torch.bfloat16)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION) if flash else nullcontext():
            out = F.scaled_dot_product_attention(q, k, v)                  # (B, H, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


register_attention_bench("full", linear=False,
                         reference=lambda n, dim, heads, dim_head: SDPALayer(dim, heads, dim_head),
                         ref_name="SDPA layer (flash kernel on CUDA in half precision)")


def attention_bench_specs() -> dict[str, AttentionBenchSpec]:
    """Every registered benchmark spec, full attention first (papers are imported on the way)."""
    names = list_attentions()                                  # imports every paper folder
    return {n: _SPECS[n] for n in ["full"] + sorted(set(_SPECS) - {"full"}) if n in names}


def build_attention(name: str, n: int, dim: int = 512, heads: int = 8, dim_head: int = 64) -> nn.Module:
    """The attention `name` at length n with its benchmark settings."""
    spec = attention_bench_specs()[name]
    return get_attention(name)(dim, heads=heads, dim_head=dim_head, **spec.kwargs(n))


class _SelfAttention(nn.Module):
    """Calls an attention as self-attention on x alone (a uniform forward for timing)."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


def _sizes(quick: bool) -> list[int]:
    return [256, 512] if quick else [256 * 2**i for i in range(7)]      # 256 ... 16384


MAX_REFERENCE_N = 8192     # transformers' BigBird materialises the n x n probabilities: 8.6 GB at n = 16384


def bench_attention_rows(spec: AttentionBenchSpec, sizes: list[int], *, dim: int, heads: int, dim_head: int,
                         device, repeats: int, warmup: int, max_ms: float,
                         dtype: torch.dtype | None = None) -> tuple[list[dict], str | None]:
    """Rows for one method (and its reference) over `sizes`, in `dtype` (None: as built, float32); stops growing n
    once our step takes `max_ms`.

    Only our row decides: a slow reference is dropped at larger n (`MAX_REFERENCE_N`), never our method.
    """
    reference, note = spec.reference, None
    if reference is not None:
        try:
            reference(sizes[0], dim, heads, dim_head)
        except ImportError as e:
            reference, note = None, f"reference `{spec.ref_name}` not installed ({e.name or e})"
    rows = []
    for n in sizes:
        reps = repeats if n < 4096 else max(3, repeats // 3)   # seconds per step at the largest n
        new = bench_module(
            lambda n: _SelfAttention(build_attention(spec.name, n, dim, heads, dim_head)),
            lambda n: (torch.randn(1, n, dim, requires_grad=True),), [n], device=device, repeats=reps,
            warmup=min(warmup, reps), name=spec.name, ref_name=spec.ref_name or "reference",
            reference=None if reference is None or n > MAX_REFERENCE_N
            else (lambda n: _SelfAttention(reference(n, dim, heads, dim_head))), dtype=dtype)
        rows += new
        ours = [r for r in new if r["method"] == spec.name]
        if not all(r.get("time_ms", float("inf")) < max_ms for r in ours):
            break                                              # the next n would take minutes (or failed)
    return rows, note


@register_bench("attention")
def bench_attention(args) -> None:
    """Time and peak memory of every registered attention against n, with the public references."""
    from ..runtime import resolve_device

    quick = bool(getattr(args, "quick", False))
    repeats, warmup = (2, 1) if quick else (args.repeats, args.warmup)
    device = resolve_device(getattr(args, "device", "cpu") or "cpu")
    dtype = bench_dtype(getattr(args, "dtype", None))
    dim, heads, dim_head = (64, 2, 32) if quick else (512, 8, 64)
    sizes = _sizes(quick)
    pattern = getattr(args, "pattern", None)
    load = load_now()
    rows, notes, summary = [], [], []
    for name, spec in attention_bench_specs().items():
        if pattern and not fnmatch.fnmatch(name, pattern):
            continue
        print(f"[bench attention] {name}", file=sys.stderr, flush=True)
        new, note = bench_attention_rows(spec, sizes, dim=dim, heads=heads, dim_head=dim_head, device=device,
                                         repeats=repeats, warmup=warmup, max_ms=20_000.0,
                                         dtype=None if dtype == torch.float32 else dtype)
        rows += new
        notes += [f"- {note}"] if note else []
        slopes = method_slopes(new, min_size=1024, missing_ok=True)
        for method in slopes:
            ours = method == name
            ratios = [r["ratio"] for r in new if r["method"] == method and "ratio" in r]
            summary.append({"method": method, "role": "ours" if ours else f"reference of {name}",
                            "linear": spec.linear if ours else "",
                            "time slope": slopes[method]["time_ms"],
                            "memory slope": slopes[method]["peak_mb"],
                            "max n": max((r["size"] for r in new if r["method"] == method and "time_ms" in r),
                                         default="-"),
                            "ratio (median)": statistics.median(ratios) if ratios else ""})
    out = getattr(args, "out", None) or default_benchmarks_path()
    # a run limited by --pattern gets a section of its own, so that it does not replace the table of every method
    partial = bool(pattern) and any(not fnmatch.fnmatch(name, pattern) for name in attention_bench_specs())
    section = f"attention-{re.sub(r'[^A-Za-z0-9_]+', '-', pattern)}" if partial else "attention"
    section += setting_suffix(device, dtype)
    figures = []
    if not quick and not partial:
        for key, label in (("time_ms", "time"), ("peak_mb", "memory")):
            path = out.parent / "figures" / f"attention_{label}{setting_suffix(device, dtype).replace('-', '_')}.png"
            plot_loglog([r for r in rows if r["method"] in attention_bench_specs()], key, path,
                        f"attention: forward+backward {label} vs n")
            figures.append(f"![attention {label}](figures/{path.name})")
    markdown = "\n".join([
        (f"## Attention: `{pattern}` only" if partial else "## Attention") + setting_title(device, dtype),
        "",
        f"`archzoo bench attention{f' --pattern {pattern}' if partial else ''}"
        f"{setting_flags(device, dtype)}`: "
        f"batch 1, dim {dim}, {heads} heads of {dim_head}, self-attention alone "
        f"(projections included), forward+backward on `{device}` in {str(dtype).removeprefix('torch.')} (torch "
        f"{torch.__version__}), median of {repeats} "
        f"steps after {warmup} warm-up{' (quick run)' if quick else ''}. `ratio` = our median time / the "
        "reference's on the same input (references run up to n = 8192), `ratio (median)` its median over n. "
        "A method stops at the first n whose "
        "own step takes over 20 s. "
        "Slopes are log-log least squares from n = 1024 up (memory slope <= 1.15 is the target for linear methods)."
        f"{load_note(load)}",
        "",
        format_table(summary, ["method", "role", "linear", "time slope", "memory slope", "max n",
                               "ratio (median)"]).rstrip(),
        "",
        *figures,
        "",
        "<details><summary>All rows</summary>",
        "",
        format_table(rows, ["method", "size", "time_ms", "time_iqr_ms", "peak_mb", "ratio"]).rstrip(),
        "",
        "</details>",
        *(["", "Notes:", *notes] if notes else []),
    ])
    write_section(out, section, markdown)
    print(markdown)


# ----------------------------------------------------------------------------- the task suite

TASKS = ("copy", "duplication", "associative_recall", "listops", "retrieval")


def task_accuracy(name: str, task_name: str, *, length: int, steps: int, batch_size: int, n_train: int,
                  n_test: int, seed: int = 0, lr: float = 1e-2, positional: str = "sinusoidal", device="cpu") -> dict:
    """Train one small SequenceTransformer with attention `name` on a generated task; test accuracy (percent)."""
    from ...core.sequence import SequenceTransformer, token_accuracy
    from ...data import load_dataset
    from ..train import train

    task = load_dataset(task_name, length=length, n_train=n_train, n_test=n_test, seed=seed)
    causal = task_name == "duplication"
    spec = attention_bench_specs()[name]
    torch.manual_seed(seed)
    model = SequenceTransformer(task.vocab_size, task.num_classes, dim=64, depth=2, heads=4, dim_head=16,
                                max_len=length, attention=name,
                                attention_kwargs=(spec.task_kwargs or spec.kwargs)(length),
                                causal=causal, per_token=task.per_token, positional=positional)
    train(model, task.train, steps=steps, batch_size=batch_size, lr=lr, warmup_steps=steps // 10, seed=seed,
          device=device, progress=False)
    return token_accuracy(model.cpu(), task.test)


def majority_accuracy(task) -> float:
    """Test accuracy (percent) of always predicting the most frequent training label: the table's chance row."""
    y_train, y_test = task.train.tensors[1], task.test.tensors[1]
    mode = torch.bincount(y_train[y_train != -100].flatten()).argmax()
    return 100.0 * float((y_test[y_test != -100] == mode).double().mean())


@register_bench("tasks")
def bench_tasks(args) -> None:
    """Every registered attention, one small model and one budget, on every generated task: test accuracy."""
    from ...data import load_dataset

    quick = bool(getattr(args, "quick", False))
    length = getattr(args, "length", None) or (64 if quick else 256)
    steps, n_train, n_test = (20, 64, 32) if quick else (300, 4000, 500)
    pattern = getattr(args, "pattern", None)
    rows = [{"method": "majority class", **{t: majority_accuracy(load_dataset(t, length=length, n_train=n_train,
                                                                                n_test=n_test, seed=0))
                                            for t in TASKS}}]
    for name in attention_bench_specs():
        if pattern and not fnmatch.fnmatch(name, pattern):
            continue
        row = {"method": name}
        for task_name in TASKS:
            print(f"[bench tasks] {name} on {task_name}", file=sys.stderr, flush=True)
            try:
                acc = task_accuracy(name, task_name, length=length, steps=steps, batch_size=32, n_train=n_train,
                                    n_test=n_test, device=getattr(args, "device", "cpu") or "cpu")
                row[task_name] = acc["accuracy"]
                print(f"[bench tasks] {name} on {task_name}: {acc['accuracy']:.1f}%", file=sys.stderr, flush=True)
            except ValueError as e:                       # e.g. an attention with no causal form
                row[task_name] = "n/a"
                print(f"[bench tasks] {name} on {task_name}: n/a ({e})", file=sys.stderr)
        rows.append(row)
    markdown = "\n".join([
        "## Long-range tasks",
        "",
        f"`archzoo bench tasks`: each attention in the same `SequenceTransformer` (dim 64, depth 2, 4 heads of 16, "
        f"sinusoidal positions), length {length}, {n_train} training sequences, {steps} steps of batch 32 "
        f"(AdamW, lr 1e-2, 10% warm-up + cosine), seed 0, one thread; test accuracy (percent) on {n_test} test "
        f"sequences, over scored tokens (per-token tasks) or sequences. Settings per attention are those of "
        f"`bench attention` except Performer (m = 64 features for heads of 16) and Reformer (2 hash rounds). "
        f"Duplication is causal language modelling; n/a = the attention has no causal form; `majority class` "
        f"always predicts the most frequent training label"
        f"{' (quick run)' if quick else ''}.",
        "",
        format_table(rows, ["method", *TASKS]).rstrip(),
    ])
    out = getattr(args, "out", None) or default_benchmarks_path()
    write_section(out, "tasks", markdown)
    print(markdown)
