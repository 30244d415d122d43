"""Cached single-token decoding: unbatched decoding, the setting of the paper's speed results.

Each layer keeps the keys and values of the tokens decoded so far (and, for sparse QKV, the last F - 1 outputs of
its multiplicative layer, which the convolution reads), so a new token costs one pass of every layer over that
token alone. `attention_step` runs one token through an attention of the model:

- `SparseQKVAttention`: its own `step` (multiplicative layer + convolutions over the cached window);
- `core.FullAttention`: the dense projections W^Q, W^K, W^V;
- Reformer's `LSHAttention` and `SharedQKAttention`: exact shared-QK attention over every cached key (the "full
  attention" LSH approximates; Kitaev et al. 2020 evaluate LSH-trained models with it too, Table 2), own key
  masked unless it is the only one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import FullAttention
from ...engine.bench import bench_module
from ..reformer.lsh import SELF_PENALTY, LSHAttention, SharedQKAttention
from .sparse_qkv import SparseQKVAttention


@dataclass
class LayerCache:
    """One layer's decoding state: keys and values (B, H, T, d_head) and sparse QKV's convolution window."""

    k: Tensor | None = None
    v: Tensor | None = None
    past: Tensor | None = None


@dataclass
class DecodeState:
    """The position of the next token and one `LayerCache` per layer."""

    layers: list[LayerCache] = field(default_factory=list)
    position: int = 0


def _heads(t: Tensor, heads: int) -> Tensor:
    return rearrange(t, "b n (h d) -> b h n d", h=heads)


def attention_step(attn: nn.Module, x: Tensor, cache: LayerCache) -> Tensor:
    """The attention output (B, 1, dim) of one new token x (B, 1, dim) over itself and the cached tokens."""
    shared_qk = isinstance(attn, (LSHAttention, SharedQKAttention))
    if isinstance(attn, SparseQKVAttention):
        (q, k, v), cache.past = attn.step(x, cache.past)
    elif isinstance(attn, FullAttention):
        q, k, v = (_heads(proj(x), attn.heads) for proj in (attn.to_q, attn.to_k, attn.to_v))
    elif shared_qk:
        q, v = _heads(attn.to_qk(x), attn.heads), _heads(attn.to_v(x), attn.heads)
        k = F.normalize(q, dim=-1)                                             # k_j = q_j / ||q_j||
    else:
        raise ValueError(f"cached decoding supports SparseQKVAttention, FullAttention and Reformer's shared-QK "
                         f"attentions, got {type(attn).__name__}")
    cache.k = k if cache.k is None else torch.cat([cache.k, k], dim=2)        # (B, H, T, d)
    cache.v = v if cache.v is None else torch.cat([cache.v, v], dim=2)
    if shared_qk:
        bias = torch.zeros(1, cache.k.shape[2], dtype=q.dtype, device=q.device)      # (1, T)
        bias[:, -1] = -SELF_PENALTY                                             # the own key, last (m = 10^5)
        out = F.scaled_dot_product_attention(q, cache.k, cache.v, attn_mask=bias, scale=1.0)
    else:
        out = F.scaled_dot_product_attention(q, cache.k, cache.v)             # every cached key is earlier
    return attn.to_out(rearrange(out, "b h n d -> b n (h d)"))                # (B, 1, dim)


class DecodeLoop(nn.Module):
    """`forward(prompt)` (B, 1): `steps` tokens of greedy cached decoding by `model` (eval mode), the module that
    `archzoo.engine.bench.bench_module` times (`backward=False`) to measure decoding time per token."""

    def __init__(self, model: nn.Module, steps: int):
        super().__init__()
        self.model, self.steps = model.eval(), steps

    def forward(self, prompt: Tensor) -> Tensor:
        return self.model.eval().generate(prompt, self.steps - 1)     # the prompt's token is decoded too


def decoding_rows(make_model: Callable[[str, int], nn.Module], ff_dims: Sequence[int], tokens: int, *,
                  repeats: int, warmup: int, device: str | torch.device = "cpu") -> list[dict]:
    """Cached greedy decoding of `tokens` tokens at batch 1 by `make_model("sparse", d_ff)` beside
    `make_model("dense", d_ff)`, timed by `bench_module` (forward only, median of `repeats`): its rows, with
    `d_ff`, `ms_per_token` and, on the sparse rows, `speedup` = dense time / sparse time."""
    def loop(kind):
        return lambda d_ff: DecodeLoop(make_model(kind, d_ff), tokens)

    rows = bench_module(loop("sparse"), lambda d_ff: torch.zeros(1, 1, dtype=torch.long), list(ff_dims),
                        backward=False, reference=loop("dense"), name="sparse", ref_name="dense", repeats=repeats,
                        warmup=warmup, device=device)
    for row in rows:
        row["d_ff"] = row.pop("size")
        if "time_ms" in row:
            row["ms_per_token"] = row["time_ms"] / tokens
        if "ratio" in row:
            row["speedup"] = 1 / row.pop("ratio")
    return rows
