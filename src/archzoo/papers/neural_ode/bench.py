"""`archzoo bench science`, part neural_ode: memory and time of an ODE block's forward+backward against its number
of function evaluations (NFE), with gradients by the adjoint method and by backpropagation through the solver.

The block is ODE-Net's (`ConvDynamics`, 64 channels on the 6 x 6 state, batch 32) solved by rk4 with a fixed number
of steps, so that NFE = 4 x steps exactly; `bench_module` measures both methods at each NFE the same way as every
suite (median time, peak memory). Backpropagating through the solver stores every evaluation's activations: its
memory grows linearly in NFE (log-log slope ~1); the adjoint stores only the solution at t1 and solves backwards
with constant memory (slope ~0, Sec. 2). The same rows are claim `adjoint_memory`'s evidence.
"""

from __future__ import annotations

import torch

from ...engine.bench import BenchOptions, bench_module, format_table, method_slopes, register_family_bench
from .odeblock import ODEBlock
from .odenet import ConvDynamics


def ode_block(nfe: int, adjoint: bool, width: int) -> ODEBlock:
    """ODE-Net's block solved by rk4 with nfe / 4 steps, seeded (both methods get the same weights)."""
    torch.manual_seed(0)
    return ODEBlock(ConvDynamics(width), method="rk4", steps=nfe // 4, adjoint=adjoint)


def memory_vs_nfe(nfes, *, batch: int = 32, width: int = 64, side: int = 6, repeats: int = 3, warmup: int = 1,
                  device="cpu") -> tuple[list[dict], dict]:
    """bench_module rows of "adjoint" and "backprop" (the reference) at each NFE, and their log-log slopes."""
    rows = bench_module(lambda n: ode_block(n, True, width), lambda n: (torch.randn(batch, width, side, side),),
                        sizes=list(nfes), reference=lambda n: ode_block(n, False, width), name="adjoint",
                        ref_name="backprop", repeats=repeats, warmup=warmup, device=device)
    return rows, method_slopes(rows)


def bench_neural_ode(opts: BenchOptions) -> str:
    nfes = (8, 16, 32) if opts.quick else (8, 16, 32, 64, 128, 256)
    batch, width = (4, 16) if opts.quick else (32, 64)
    rows, slopes = memory_vs_nfe(nfes, batch=batch, width=width, repeats=opts.repeats, warmup=opts.warmup,
                                 device=opts.device)
    slope_text = "; ".join(f"{m}: memory {s['peak_mb']:.2f}, time {s['time_ms']:.2f}" for m, s in slopes.items())
    return "\n\n".join([
        "### neural_ode: adjoint vs. backpropagation through the solver, against NFE",
        f"ODE-Net's ODE block ({width} channels, 6x6, batch {batch}) solved by rk4, NFE = 4 x steps; "
        "forward+backward, `size` = NFE, ratio = adjoint time / backprop time. "
        f"Log-log slopes against NFE: {slope_text} (the adjoint's memory slope should be ~0, backprop's ~1).",
        format_table(rows, ["method", "size", "time_ms", "peak_mb", "ratio"]),
    ])


register_family_bench("science", "neural_ode", bench_neural_ode)
