"""Linformer in `archzoo bench attention | tasks`: k = 256 projected keys (the paper's usual setting, Table 2-3),
headwise sharing, against lucidrains' `linformer` package (pip `linformer`) with the same n, k, heads and sharing."""

from __future__ import annotations

from torch import nn

from ...engine.bench import register_attention_bench

K = 256


def make_reference(n: int, dim: int, heads: int, dim_head: int) -> nn.Module:
    """lucidrains' `LinformerSelfAttention`: one E and one F per layer shared by the heads, as our "headwise"."""
    from linformer import LinformerSelfAttention

    return LinformerSelfAttention(dim, seq_len=n, k=K, heads=heads, dim_head=dim_head)


register_attention_bench("linformer", kwargs=lambda n: dict(seq_len=n, k=K), reference=make_reference,
                         ref_name="linformer LinformerSelfAttention (pip)", linear=True)
