"""`archzoo bench norms`: the cnn family's written-out normalization layers against PyTorch's fused ones, and
every cnn-family preset at 224 px (batch 8) and 32 px (batch 64).

Where PyTorch has the same operation fused (BatchNorm2d, GroupNorm, LocalResponseNorm) the pair computes the
same function (the papers' tests prove it); where it has none (weight standardization, EvoNorm) the
counterpart is the layer the paper replaces, so the ratio is the overhead of the new layer. A layer that keeps
the paper's equations written out in `reference_forward` beside a fast `forward` (issue 13) gets a third time,
`written_out_ms`: what readability costs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ...registry import get_paper, model_paper, register_bench, table
from .markdown import default_benchmarks_path, format_table, load_note, load_now, write_section
from .measure import bench_module
from .models import LARGE_MODEL_PARAMS, bench_image_model, matching_models


@dataclass(frozen=True)
class LayerPair:
    """A paper's written-out layer and the counterpart it is timed against, each built as `make(C)`."""

    ours: str
    make_ours: Callable[[int], nn.Module]
    counterpart: str
    make_counterpart: Callable[[int], nn.Module]


_LAYER_PAIRS = table("norm benchmark")             # our layer's name -> LayerPair


def register_norm_bench(ours: str, make_ours: Callable[[int], nn.Module], counterpart: str,
                        make_counterpart: Callable[[int], nn.Module]) -> None:
    """Put a paper's layer beside its counterpart in `archzoo bench norms` (the paper calls this; the engine
    imports no paper). `make_*(C)` builds the layer for C channels; `ours` names it, with its paper."""
    _LAYER_PAIRS[ours] = LayerPair(ours, make_ours, counterpart, make_counterpart)


def layer_pairs() -> list[LayerPair]:
    """Every registered (our layer, counterpart) pair, in registration order."""
    from ...registry import list_papers

    list_papers()                       # imports the papers, whose modules register their pairs
    return list(_LAYER_PAIRS.values())


# (batch, channels, height, width): a ResNet's first stage at 224 px, batch 8; a CIFAR ResNet's at 32 px, batch 64.
LAYER_SHAPES = ((8, 64, 56, 56), (64, 32, 32, 32))


class WrittenOut(nn.Module):
    """A layer run through its `reference_forward` (the paper's equations written out), to time that form."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer.reference_forward(x)


def _bench_pair(pair: LayerPair, shape: tuple, **kw) -> dict:
    """One row: our layer and its counterpart on the same random input of `shape` (B, C, H, W), and our layer's
    written-out form where it has one."""
    print(f"[bench norms] {pair.ours} at {shape}", file=sys.stderr, flush=True)
    c = shape[1]
    inputs = lambda _: (torch.randn(*shape, requires_grad=True),)  # noqa: E731
    mine, ref = bench_module(lambda _: pair.make_ours(c), inputs, [None], name=pair.ours,
                             reference=lambda _: pair.make_counterpart(c), ref_name=pair.counterpart, **kw)
    row = {"layer": pair.ours, "counterpart": pair.counterpart, "input": "x".join(map(str, shape)),
           "ours_ms": mine.get("time_ms"), "theirs_ms": ref.get("time_ms"), "ratio": mine.get("ratio"),
           "ours_mb": mine.get("peak_mb"), "theirs_mb": ref.get("peak_mb")}
    if hasattr(pair.make_ours(c), "reference_forward"):
        (written,) = bench_module(lambda _: WrittenOut(pair.make_ours(c)), inputs, [None], name=pair.ours, **kw)
        row["written_out_ms"] = written.get("time_ms")
    return row


@register_bench("norms")
def bench_norms(args) -> None:
    """The layer table, then the model table of the cnn family at the two input settings."""
    from ..runtime import resolve_device

    quick = bool(getattr(args, "quick", False))
    repeats, warmup = (2, 1) if quick else (args.repeats, args.warmup)
    device = resolve_device(getattr(args, "device", "cpu") or "cpu")
    shapes = ((2, 32, 8, 8),) if quick else LAYER_SHAPES
    load = load_now()
    layer_rows = [_bench_pair(pair, shape, device=device, repeats=repeats, warmup=warmup)
                  for pair in layer_pairs() for shape in shapes]

    pattern = getattr(args, "pattern", None) or "*"
    names = [n for n in matching_models(pattern) if get_paper(model_paper(n)).family == "cnn"]
    settings = ((2, 32),) if quick else ((8, 224), (64, 32))
    model_rows = []
    for name in names:
        for batch_size, img_size in settings:
            print(f"[bench norms] {name} at {img_size} px, batch {batch_size}", file=sys.stderr, flush=True)
            model_rows.append(bench_image_model(name, batch_size=batch_size, img_size=img_size, device=device,
                                                 repeats=repeats, warmup=warmup, with_reference=False))
    measured = [r for r in model_rows if "note" not in r]
    # a preset that failed at both sizes is listed once
    skipped = list(dict.fromkeys(f"- `{r['model']}`: {r['note']}" for r in model_rows if "note" in r))
    markdown = "\n".join([
        "## Normalization layers and cnn presets",
        "",
        f"`archzoo bench norms` on `{device}` (torch {torch.__version__}, {torch.get_num_threads()} thread(s)): "
        f"forward+backward, median of {repeats} steps after {warmup} warm-up{' (quick run)' if quick else ''}. "
        "Layers: ours (the layer's `forward`) against PyTorch's fused layer of the same function, or, where "
        "PyTorch has none, against the layer the paper replaces; `ratio` = ours / counterpart; `written_out_ms`: "
        "our layer through `reference_forward`, the paper's equations written out, where `forward` is a faster "
        f"path to the same function (tested equal).{load_note(load)}",
        "",
        format_table(layer_rows, ["layer", "counterpart", "input", "ours_ms", "theirs_ms", "ratio", "written_out_ms",
                                  "ours_mb", "theirs_mb"]).rstrip(),
        "",
        "Presets of the cnn family (ImageNet presets at 32 px run with their ImageNet stems, so their 32 px "
        f"rows are only a size check; on a CPU, presets over {LARGE_MODEL_PARAMS / 1e6:.0f}M parameters get "
        "`steps` = 2 timed steps after 1 warm-up, since one step takes minutes; OOM = it did not fit in memory):",
        "",
        format_table(measured, ["model", "params (M)", "input", "steps", "time_ms", "images/s", "peak_mb"]).rstrip()
        if measured else "No preset matches.",
        *(["", "Skipped:", *skipped] if skipped else []),
    ])
    out = getattr(args, "out", None) or default_benchmarks_path()
    write_section(out, "norms", markdown)
    print(markdown)
