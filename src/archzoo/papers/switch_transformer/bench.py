"""`archzoo bench moe`, part `switch_transformer`: tokens/s (forward+backward) of a Switch layer (`core.MoE`, top-1,
8 experts, capacity factor 1.0, one group per sequence) beside the dense FFN of equal FLOPs per token and Hugging
Face's `SwitchTransformersSparseMLP` of the same size (when transformers is installed)."""

from __future__ import annotations

import torch

from ...core import FeedForward, MoE
from ...engine.bench import bench_module, format_table, register_family_bench


def reference_switch(dim: int, num_experts: int, tokens_per_group: int, capacity_factor: float):
    """transformers' `SwitchTransformersSparseMLP` with our layout (ReLU experts without biases, capacity per
    sequence), or None when transformers is not installed."""
    try:
        from transformers.models.switch_transformers import modeling_switch_transformers as hf
    except ImportError:
        return None
    capacity = int(tokens_per_group * capacity_factor / num_experts)
    config = hf.SwitchTransformersConfig(d_model=dim, d_ff=4 * dim, num_experts=num_experts, expert_capacity=capacity,
                                         dropout_rate=0.0, router_jitter_noise=0.0)
    return hf.SwitchTransformersSparseMLP(config)


def bench_switch(opts) -> str:
    dim, experts, batch = (32, 4, 2) if opts.quick else (256, 8, 8)
    lengths = (64,) if opts.quick else (256, 1024)
    timing = dict(device=opts.device, repeats=opts.repeats, warmup=opts.warmup)

    def inputs(n):
        return (torch.randn(batch, n, dim),)

    has_reference = reference_switch(dim, experts, lengths[0], 1.0) is not None
    rows = bench_module(lambda n: MoE(dim, experts, k=1, capacity_factor=1.0, group_size=n), inputs, lengths,
                        reference=(lambda n: reference_switch(dim, experts, n, 1.0)) if has_reference else None,
                        name="Switch layer (ours)", ref_name="transformers SwitchTransformersSparseMLP", **timing)
    rows += bench_module(lambda n: FeedForward(dim, 4.0, "relu"), inputs, lengths, name="dense FFN", **timing)
    for row in rows:
        row["tokens"] = batch * row.pop("size")
        if "time_ms" in row:
            row["tokens_per_s"] = round(row["tokens"] / row["time_ms"] * 1e3)
    note = "" if has_reference else " (transformers is not installed: ours and dense only)"
    return (f"### Switch layer (switch_transformer)\n\nForward+backward of one Switch layer ({experts} experts of "
            f"width {4 * dim} on dim {dim}, top-1, capacity factor 1.0 per sequence of {batch} sequences) beside "
            f"the dense FFN of width {4 * dim}, the same FLOPs per token{note}; ratio = ours / transformers.\n\n"
            + format_table(rows, ["method", "tokens", "time_ms", "tokens_per_s", "peak_mb", "ratio"]))


register_family_bench("moe", "switch_transformer", bench_switch)
