"""`archzoo bench moe`, part `terraformer`: milliseconds per token of cached single-token decoding (batch 1) of a
Terraformer with sparse FFN + sparse QKV beside the dense Transformer of the same d_model and d_ff, at growing d_ff
(the setting of the paper's decoding-time results)."""

from __future__ import annotations

import torch

from ...engine.bench import format_table, register_family_bench
from .decoding import decoding_rows
from .models import comparison_lm


def bench_terraformer(opts) -> str:
    dim, heads, block_size, ff_dims, tokens = ((32, 2, 8, (64, 256), 4) if opts.quick else
                                               (512, 8, 32, (2048, 8192, 32768), 32))

    def make(kind, d_ff):
        return comparison_lm(256, kind, dim=dim, depth=2, heads=heads, ff_dim=d_ff, block_size=block_size,
                             max_len=tokens)

    torch.manual_seed(0)
    rows = decoding_rows(make, ff_dims, tokens, repeats=opts.repeats, warmup=opts.warmup, device=opts.device)
    for row in rows:
        row["method"] = {"sparse": f"Terraformer (sparse FFN, N={block_size}, + sparse QKV)",
                         "dense": "dense Transformer"}[row["method"]]
    return (f"### Terraformer decoding (terraformer)\n\nCached greedy decoding of {tokens} tokens at batch 1, two "
            f"reversible layers of d_model {dim} ({heads} heads), untrained; speedup = dense time / sparse time.\n\n"
            + format_table(rows, ["method", "d_ff", "ms_per_token", "speedup", "peak_mb"]))


register_family_bench("moe", "terraformer", bench_terraformer)
