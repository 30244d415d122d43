"""`archzoo bench science`, part `neural_ca`: one step of the article's CA (16 channels, 48 -> 128 -> 16, 8,336
parameters), forward+backward, on a batch of 8 grids from our 24 x 24 up to the article's 72 x 72 (a 40 x 40 emoji
padded by 16 cells). A training step backpropagates through 64-96 such steps (32-48 in our claims)."""

from __future__ import annotations

import torch

from ...engine.bench import BenchOptions, bench_module, format_table, register_family_bench
from .ca import NeuralCA

BATCH = 8


def bench_neural_ca(opts: BenchOptions) -> str:
    sides = [16, 24] if opts.quick else [24, 40, 72]
    rows = bench_module(lambda side: NeuralCA(), lambda side: (torch.rand(BATCH, 16, side, side),), sides,
                        device=opts.device, repeats=opts.repeats, warmup=opts.warmup, name="NeuralCA, one step")
    for row in rows:
        if "time_ms" in row:
            row["ca_steps_per_s"] = 1000.0 / row["time_ms"]
    return "\n\n".join([
        "### neural_ca: one step of the growing CA",
        f"Forward+backward of one CA step (perception, update rule, stochastic mask, living cell masks) on a batch of "
        f"{BATCH} side x side grids, and the CA steps per second this allows in training.",
        format_table(rows, ["method", "size", "time_ms", "peak_mb", "ca_steps_per_s"]),
    ])


register_family_bench("science", "neural_ca", bench_neural_ca)
