"""`archzoo bench models`: forward+backward time, images/s and peak memory of every registered image classifier,
with a public reference implementation beside ours where one is registered and installed."""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Callable

import torch
from torch import nn

from ...registry import register_bench, table
from .flops import peak_tflops, step_flops
from .markdown import (
    bench_dtype,
    default_benchmarks_path,
    format_table,
    load_note,
    load_now,
    setting_suffix,
    setting_title,
    write_section,
)
from .measure import bench_module


def _create(name: str, img_size: int | None) -> nn.Module:
    """Build a preset, at `img_size` when it takes one (positional embeddings), else at its default (convolutional
    presets take any size)."""
    from ...registry import accepted_kwargs, create_model

    takes_size = img_size is not None and "img_size" in (accepted_kwargs(name) or ())
    return create_model(name, **({"img_size": img_size} if takes_size else {}))


_MODEL_REFERENCES = table("model reference")     # fnmatch pattern -> (reference name, build)


def register_model_reference(pattern: str, ref_name: str, build: Callable[..., nn.Module]) -> None:
    """A public implementation to time beside the presets matching `pattern` (fnmatch) in `archzoo bench models`.

    `build(name, **overrides)` returns the reference module at preset `name`'s configuration, taking the same
    image batch; it imports its package inside, so an absent package raises ImportError and is skipped.
    """
    _MODEL_REFERENCES[pattern] = (ref_name, build)


def matching_models(pattern: str | None) -> list[str]:
    """The presets matching `pattern`: fnmatch patterns separated by `|` ("resnet50|bit_r50x1"); None is all."""
    from ...registry import list_models

    return sorted({name for p in (pattern or "*").split("|") for name in list_models(p.strip())})


def preset_on_meta(name: str, **overrides) -> nn.Module:
    """Our preset `name` built on the meta device (shapes only, no memory): what a reference's `build` reads the
    configuration from. `img_size` is dropped for a preset that takes none (convolutional nets take any size)."""
    from ...registry import accepted_kwargs, create_model

    if "img_size" not in (accepted_kwargs(name) or ("img_size",)):
        overrides.pop("img_size", None)
    with torch.device("meta"):
        return create_model(name, **overrides)


def model_reference(name: str) -> tuple[str, Callable[..., nn.Module]] | None:
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


_BATCH_LIMITS = table("model bench batch limit")   # fnmatch pattern -> (largest batch, why)


def register_batch_limit(pattern: str, batch_size: int, why: str) -> None:
    """Cap the batch of the presets matching `pattern` (fnmatch) in `archzoo bench models`, for a preset whose step
    at the default batch does not fit in a workstation's memory; `why` is printed in the section."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _BATCH_LIMITS[pattern] = (batch_size, why)


def batch_limit(name: str) -> tuple[int, str] | None:
    """(largest batch, why) for a preset with a registered cap, else None."""
    return next((limit for pattern, limit in _BATCH_LIMITS.items() if fnmatch.fnmatch(name, pattern)), None)


LARGE_MODEL_PARAMS = 150e6


def bench_image_model(name: str, *, batch_size: int, img_size: int | None, device, repeats, warmup,
                      with_reference: bool = True, dtype: torch.dtype | None = None,
                      peak: float | None = None) -> dict:
    """One registered image classifier: forward+backward on a random batch of its input size, and, when one is
    registered and installed (and `with_reference`), its public reference on the same batch and in the same
    training/eval mode (`ref_ms`, `ratio` = ours / reference).

    On a CPU a model over `LARGE_MODEL_PARAMS` takes minutes a step, so it gets at most 2 timed steps after 1
    warm-up (the row's `steps` says how many were timed) and no reference beside it. A preset with a registered
    `batch_limit` runs at that batch when it is smaller than `batch_size` (the row's `input` shows the batch).
    `dtype` casts model, reference and batch (None: float32 as built). `tflop/s`: the model FLOPs of the step
    (`flops.step_flops`) over its median time; `mfu`: that over `peak` TFLOP/s (default: the device's datasheet
    peak for the dtype, `flops.peak_tflops`; none on a CPU).
    """
    limit = batch_limit(name)
    capped = limit is not None and limit[0] < batch_size
    batch_size = limit[0] if capped else batch_size
    try:
        model = _create(name, img_size)
    except Exception as e:
        return {"model": name, "note": f"building it failed ({type(e).__name__}: {e})"}
    shape = model.pretrained_cfg["input_size"]
    if model.pretrained_cfg["task"] != "image-classification":
        return {"model": name, "note": f"not an image classifier ({model.pretrained_cfg['task']})"}
    c, h, w = shape
    h, w = (img_size, img_size) if img_size is not None else (h, w)
    params = sum(p.numel() for p in model.parameters())
    if torch.device(device).type == "cpu" and params > LARGE_MODEL_PARAMS:
        repeats, warmup = min(repeats, 2), min(warmup, 1)
        ref_name, reference, note = None, None, None
        if model_reference(name):
            note = f"no reference on a CPU above {LARGE_MODEL_PARAMS / 1e6:.0f}M parameters"
    elif with_reference:
        ref_name, reference, note = _reference_for(name, img_size)
    else:
        ref_name, reference, note = None, None, None
    if reference is not None:
        reference.train(model.training)      # the same mode as ours: BN with batch statistics in both, or in neither
    rows = bench_module(model, lambda _: (torch.randn(batch_size, c, h, w),), [None], device=device,
                        repeats=repeats, warmup=warmup, name=name, reference=reference,
                        ref_name=ref_name or "reference", dtype=dtype)
    row = {"model": name, "params (M)": params / 1e6, "input": f"{batch_size}x{c}x{h}x{w}", "steps": repeats,
           **{k: v for k, v in rows[0].items() if k not in ("method", "size")}}
    if capped:
        row["batch_limit"] = limit[1]
    if "time_ms" in row:
        row["images/s"] = batch_size / row["time_ms"] * 1e3
        flops = step_flops(preset_on_meta(name, **({} if img_size is None else {"img_size": img_size})),
                           (batch_size, c, h, w))
        peak = peak if peak is not None else peak_tflops(device, dtype or torch.float32)
        if flops is not None:
            row["tflop/s"] = flops / row["time_ms"] / 1e9
            if peak:
                row["mfu"] = row["tflop/s"] / peak
    if reference is not None:
        row.update({"reference": ref_name, "ref_ms": rows[1].get("time_ms"), "ref_mb": rows[1].get("peak_mb")})
    elif note:
        row["reference"] = note
    return row


@register_bench("models")
def bench_models(args) -> None:
    """Forward+backward time, images/s and peak memory of every registered image classifier matching `pattern`.

    `args`: `device`, `repeats`, `warmup`, `quick` (2 repeats, 1 warm-up, batch 2 at 32x32), `out`
    (docs/benchmarks.md), `pattern` (fnmatch on model names, several separated by `|`), `batch_size`, `img_size`,
    `family` (only that family's presets, written to their own section `models-<family>`), `dtype` ("float32",
    "bfloat16", "float16") and `peak_tflops` (the peak for MFU where the device's is not known). A run off the
    CPU or in another dtype writes its own section (`models-<family>-cuda-bfloat16`), beside the CPU one.
    """
    from ...registry import get_paper, list_papers, model_paper
    from ..runtime import resolve_device

    quick = bool(getattr(args, "quick", False))
    repeats, warmup = (2, 1) if quick else (args.repeats, args.warmup)
    batch_size = getattr(args, "batch_size", None) or (2 if quick else 8)
    img_size = getattr(args, "img_size", None) or (32 if quick else None)
    device = resolve_device(getattr(args, "device", "cpu") or "cpu")
    dtype = bench_dtype(getattr(args, "dtype", None))
    load = load_now()
    family = getattr(args, "family", None)
    if family is not None:
        list_papers(family)                                   # an unknown family raises ValueError
    out = getattr(args, "out", None) or default_benchmarks_path()
    section = f"models-{family}" if family else "models"
    section += setting_suffix(device, dtype)
    names = [name for name in matching_models(getattr(args, "pattern", None))
             if family is None or get_paper(model_paper(name)).family == family]
    setting = dict(family=family, device=device, dtype=dtype, repeats=repeats, warmup=warmup, quick=quick, load=load,
                   total=len(names))
    rows = []
    for name in names:
        print(f"[bench models] {name}", file=sys.stderr, flush=True)
        rows.append(bench_image_model(name, batch_size=batch_size, img_size=img_size, device=device,
                                       repeats=repeats, warmup=warmup, dtype=None if dtype == torch.float32 else dtype,
                                       peak=getattr(args, "peak_tflops", None)))
        # written after every preset, so a run killed midway (out of memory) keeps the rows it measured, and says
        # that it is partial
        write_section(out, section, _models_section(rows, **setting))
    markdown = _models_section(rows, **setting)
    write_section(out, section, markdown)
    print(markdown)


def _models_section(rows: list[dict], *, family: str | None, device, dtype: torch.dtype, repeats: int, warmup: int,
                    quick: bool, load: float, total: int) -> str:
    measured = [r for r in rows if "note" not in r]
    skipped = [f"- `{r['model']}`: {r['note']}" for r in rows if "note" in r]
    capped = [f"- `{r['model']}` ran at {r['input']}: {r['batch_limit']}" for r in measured if "batch_limit" in r]
    partial = (f" **Partial: {len(rows)} of the {total} presets measured so far** (a run stopped here has lost the "
               f"other presets' rows from this section)." if len(rows) < total else "")
    mfu = any("mfu" in r for r in measured)
    return "\n".join([
        f"## Models{f' ({family} family)' if family else ''}{setting_title(device, dtype)}",
        "",
        f"Forward+backward of a random batch on `{device}` in {str(dtype).removeprefix('torch.')} (torch "
        f"{torch.__version__}): median of {repeats} steps after {warmup} warm-up{' (quick run)' if quick else ''}. "
        "`tflop/s`: the model FLOPs of one step (matrix products and convolutions, forward and backward, counted on "
        f"the meta device) over its median time"
        f"{'; `mfu`: that over the peak of the device for the dtype' if mfu else ''}."
        f"{load_note(load)}{partial}",
        "",
        format_table(measured, ["model", "params (M)", "input", "steps", "time_ms", "images/s", "tflop/s",
                                *(["mfu"] if mfu else []), "peak_mb", "reference", "ref_ms", "ratio",
                                "ref_mb"]).rstrip()
        if measured else "No registered image classifier matches.",
        *(["", "Run at a smaller batch:", *capped] if capped else []),
        *(["", "Skipped:", *skipped] if skipped else []),
    ])
