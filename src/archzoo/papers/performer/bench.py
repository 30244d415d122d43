"""Performer in `archzoo bench attention | tasks`: FAVOR+ with m = 256 orthogonal positive features (chi-norm rows,
shared by the heads), against lucidrains' performer-pytorch `SelfAttention` (pip `performer-pytorch`) with the same
m, heads and dim_head (its default kernel is the same softmax kernel with positive orthogonal features).

m = 256 is about d log d for heads of d = 64 (Sec. 4, Theorem 4); the task suite's heads of d = 16 get
m = 64 >= 16 log 16 = 44."""

from __future__ import annotations

from torch import nn

from ...engine.bench import register_attention_bench

NB_FEATURES, TASK_NB_FEATURES = 256, 64


def make_reference(n: int, dim: int, heads: int, dim_head: int) -> nn.Module:
    """performer-pytorch's `SelfAttention`: non-causal FAVOR+, one projection per layer shared by the heads."""
    from performer_pytorch import SelfAttention

    return SelfAttention(dim, heads=heads, dim_head=dim_head, nb_features=NB_FEATURES, causal=False)


register_attention_bench("performer", kwargs=lambda n: dict(nb_features=NB_FEATURES), reference=make_reference,
                         ref_name="performer-pytorch SelfAttention (pip)", linear=True,
                         task_kwargs=lambda n: dict(nb_features=TASK_NB_FEATURES))
