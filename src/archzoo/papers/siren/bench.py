"""`archzoo bench science`, part `siren`: forward+backward of the paper's image SIREN (5 layers of 256 units) over a
grid of coordinates, ours beside siren-pytorch's `SirenNet` of the same size (when installed)."""

from __future__ import annotations

from ...engine.bench import bench_module, format_table, register_family_bench
from .models import Siren
from .signals import coordinate_grid


def reference_siren(hidden_features: int = 256, hidden_layers: int = 3, in_features: int = 2, out_features: int = 1,
                    omega_0: float = 30.0):
    """siren-pytorch's `SirenNet` with our layout: `hidden_layers + 1` sine layers with omega_0 in every one (the
    paper's; its default puts w0 = 1 after the first) and a linear last layer. None when it is not installed."""
    try:
        from siren_pytorch import SirenNet
    except ImportError:
        return None
    return SirenNet(in_features, hidden_features, out_features, num_layers=hidden_layers + 1, w0=omega_0,
                    w0_initial=omega_0)


def bench_siren(opts) -> str:
    sides = (16, 32) if opts.quick else (64, 128, 256)
    width = 32 if opts.quick else 256
    reference = reference_siren(width)
    rows = bench_module(lambda side: Siren(2, width, 3, 1), lambda side: (coordinate_grid(side, side),), sides,
                        device=opts.device, repeats=opts.repeats, warmup=opts.warmup,
                        reference=None if reference is None else (lambda side: reference_siren(width)),
                        name="SIREN (ours)", ref_name="siren-pytorch SirenNet")
    for row in rows:
        row["points"] = row.pop("size") ** 2
    note = "" if reference is not None else " (siren-pytorch is not installed: ours alone)"
    params = sum(p.numel() for p in Siren(2, width, 3, 1).parameters())
    return (f"### SIREN (siren)\n\nForward+backward of a SIREN with 5 layers of {width} units ({params:,} parameters; "
            f"256 units is the paper's image network) over all the pixels of a side x side image{note}; ratio = "
            f"ours / siren-pytorch.\n\n"
            + format_table(rows, ["method", "points", "time_ms", "peak_mb", "ratio"]))


register_family_bench("science", "siren", bench_siren)
