"""BigBird in `archzoo bench attention | tasks`, with Hugging Face's `BigBirdBlockSparseAttention` as the reference.

`bench_kwargs(n)` is the paper's base setting (App. E: blocks of 64, w = 3, r = 3, g = 2 blocks) from n = 1024
up; shorter sequences get blocks of n / 16, so that every length keeps at least 16 blocks and a sparse graph
(with blocks of 64 a 256-token sequence would be 4 blocks, all of them seen by every query: full attention).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...engine.bench import register_attention_bench


def bench_kwargs(n: int) -> dict:
    """Constructor arguments of `BigBirdAttention` at sequence length n (besides dim, heads, dim_head)."""
    return dict(block_size=max(1, min(64, n // 16)), num_random_blocks=3, seed=0)


class HFBigBirdSelfAttention(nn.Module):
    """transformers' `BigBirdBlockSparseAttention` (q, k, v projections + block-sparse attention) followed by an
    output projection, so that it computes what `BigBirdAttention` computes: (B, N, dim) -> (B, N, dim).

    Its padding masks are built by `BigBirdModel.create_masks_for_block_sparse_attn` from an all-ones mask. In
    training mode (the default) it draws its random blocks with numpy, seeded with `seed` at every forward; in eval
    mode transformers replaces every random block by block 0.
    """

    def __init__(self, n: int, dim: int, heads: int, dim_head: int, block_size: int, num_random_blocks: int,
                 seed: int = 0):
        super().__init__()
        from transformers import BigBirdConfig
        from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention, BigBirdModel

        if dim != heads * dim_head:
            raise ValueError(f"transformers' BigBird needs dim == heads * dim_head, got {dim} != {heads} x {dim_head}")
        config = BigBirdConfig(hidden_size=dim, num_attention_heads=heads, block_size=block_size,
                               num_random_blocks=num_random_blocks, max_position_embeddings=n, use_bias=False,
                               attention_type="block_sparse")
        self.block_size = block_size
        self.attn = BigBirdBlockSparseAttention(config, seed=seed)
        self.out = nn.Linear(dim, dim)
        self._masks = BigBirdModel.create_masks_for_block_sparse_attn

    def forward(self, x: Tensor) -> Tensor:                          # (B, N, dim)
        blocked, band, from_mask, to_mask = self._masks(torch.ones(x.shape[:2], dtype=x.dtype, device=x.device),
                                                        self.block_size)
        context, _ = self.attn(x, band, from_mask, to_mask, blocked, blocked)
        return self.out(context)


def make_reference(n: int, dim: int, heads: int, dim_head: int) -> nn.Module:
    """The public reference at length n with our benchmark hyper-parameters (ImportError without transformers)."""
    kw = bench_kwargs(n)
    return HFBigBirdSelfAttention(n, dim, heads, dim_head, kw["block_size"], kw["num_random_blocks"], seed=kw["seed"])


register_attention_bench("bigbird", kwargs=bench_kwargs, reference=make_reference,
                         ref_name="transformers BigBirdBlockSparseAttention", linear=True)
