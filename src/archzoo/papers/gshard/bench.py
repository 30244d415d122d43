"""`archzoo bench moe`, part `gshard`: expert parallelism's throughput. One top-2 layer (8 experts of width 4 dim,
capacity factor 1.0, groups of S tokens) in one process of one thread on 2 groups, against the same layer sharded over
2 forked processes of one thread each (gloo on the loopback address), each holding 4 experts and routing one group."""

from __future__ import annotations

import torch

from ...core import MoE
from ...engine.bench import bench_module, format_table, register_family_bench
from .parallel import expert_parallel_step_ms


def bench_expert_parallel(opts) -> str:
    dim, experts, world = (32, 4, 2) if opts.quick else (256, 8, 2)
    groups = (64,) if opts.quick else (1024, 4096)
    rows = []
    for s in groups:
        single = bench_module(lambda s: MoE(dim, experts, k=2, capacity_factor=1.0, group_size=s),
                              lambda s: (torch.randn(world * s, dim),), [s], name="1 process, all experts",
                              device=opts.device, repeats=opts.repeats, warmup=opts.warmup)[0]
        sharded = {"method": f"{world} processes, {experts // world} experts each",
                   "time_ms": expert_parallel_step_ms(world, experts, dim, k=2, tokens=s, repeats=opts.repeats,
                                                      warmup=opts.warmup)}
        for row in (single, sharded):
            row["tokens"] = world * s
            row["tokens_per_s"] = round(row["tokens"] / row["time_ms"] * 1e3)
        sharded["speedup"] = single["time_ms"] / sharded["time_ms"]
        rows += [single, sharded]
    return (f"### Expert parallelism (gshard)\n\nForward+backward of one top-2 layer ({experts} experts of width "
            f"{4 * dim} on dim {dim}, capacity factor 1.0, groups of S tokens, {world} groups) in one process, "
            f"against the layer sharded over {world} processes of one thread each (gloo, loopback), each routing "
            f"one group to its experts and the other's by all-to-all; speedup = one process's time / the sharded "
            f"step's (the slowest process's).\n\n"
            + format_table(rows, ["method", "tokens", "time_ms", "tokens_per_s", "speedup"]))


register_family_bench("moe", "gshard", bench_expert_parallel)
