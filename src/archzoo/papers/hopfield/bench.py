"""Hopfield in `archzoo bench science`: the `Hopfield` layer against core's `FullAttention` at equal size (dim 256,
8 heads of 32, the same four projections), forward+backward over sequence lengths. With one update step the two
compute the same function (the tests check it), so the ratio ours / full measures what the Hopfield layer's
generality costs; with three update steps it does three softmax passes instead of one."""

from __future__ import annotations

import torch

from ...core.attention import FullAttention
from ...engine.bench import BenchOptions, bench_module, format_table, register_family_bench
from .layers import Hopfield

DIM, HEADS, DIM_HEAD, BATCH = 256, 8, 32, 4


def bench_hopfield(opts: BenchOptions) -> str:
    sizes = [16, 32] if opts.quick else [256, 512, 1024, 2048]
    rows = []
    for steps in (1, 3):
        rows += bench_module(lambda n, s=steps: Hopfield(DIM, HEADS, DIM_HEAD, update_steps=s),
                             lambda n: (torch.randn(BATCH, n, DIM),), sizes, device=opts.device, repeats=opts.repeats,
                             warmup=opts.warmup, reference=lambda n: FullAttention(DIM, HEADS, DIM_HEAD),
                             name=f"Hopfield, update_steps={steps}", ref_name="FullAttention (core, SDPA)")
    return "\n\n".join([
        "### hopfield: the Hopfield layer against full attention",
        f"`Hopfield` (update_steps 1 and 3, beta = 1/sqrt(d_k)) beside core's `FullAttention` at dim {DIM}, {HEADS} "
        f"heads of {DIM_HEAD}, batch {BATCH}, forward+backward; ratio = Hopfield / FullAttention median time.",
        format_table(rows, ["method", "size", "time_ms", "peak_mb", "ratio"]),
    ])


register_family_bench("science", "hopfield", bench_hopfield)
