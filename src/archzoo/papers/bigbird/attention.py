r"""BigBird block-sparse attention (Zaheer et al. 2020, arXiv:2007.14062, Sec. 2 and App. D), ITC construction.

The sequence is cut into blocks of `block_size` tokens. Query block i attends to

- the **global** blocks: the first and the last block (ITC, "internal transformer construction": existing tokens
  made global, g = 2 blocks), which in turn attend to every block;
- a **window** of `window_blocks` = 3 blocks centred on itself (w = 3 blocks: i - 1, i, i + 1);
- `num_random_blocks` = r **random** blocks (r = 3), drawn once per head among the blocks it does not already see.

This is the generalised attention of Sec. 2 with the sparse adjacency D of App. D: for query i,
ATTN_D(X)_i = x_i + \sum_h \sigma(Q_h(x_i) K_h(X_{N(i)})^T) V_h(X_{N(i)}), N(i) the out-neighbours of i in D.
The implementation gathers, for every non-global query block, its 2 + w + r key blocks into one dense
(2 + w + r) * block_size wide slab and runs softmax attention on the slab (App. D: blockify, gather, then one
dense multiplication); the two global query blocks attend to the whole sequence. No n x n tensor is ever
formed, so time and memory grow linearly in n at a fixed block layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import attention_inputs
from ...core.checks import check_shape
from ...registry import register_attention


def random_block_plan(num_blocks: int, heads: int, num_random_blocks: int = 3, window_blocks: int = 3,
                      generator: torch.Generator | None = None) -> Tensor:
    """The random part of the block graph: (heads, num_blocks - 2, r) key-block ids for the query blocks 1 ... nb-2.

    For each head and each non-global query block i, r blocks drawn uniformly without replacement among the blocks
    that are neither global (0, nb - 1) nor in i's window (Sec. 2: each query attends to r random keys; App. D
    draws whole blocks). When fewer than r such blocks exist (short sequences), the missing slots hold -1.
    """
    if num_blocks < 3:
        return torch.empty(heads, 0, num_random_blocks, dtype=torch.long)
    half = window_blocks // 2
    i = torch.arange(1, num_blocks - 1)[:, None]                            # (nb-2, 1) query blocks
    j = torch.arange(num_blocks)[None, :]                                   # (1, nb) key blocks
    seen = ((j - i).abs() <= half) | (j == 0) | (j == num_blocks - 1)       # (nb-2, nb) window or global
    keys = torch.rand(heads, num_blocks - 2, num_blocks, generator=generator).masked_fill(seen, 2.0)
    r = min(num_random_blocks, num_blocks)
    score, plan = keys.topk(r, dim=-1, largest=False)                       # r uniform picks among the unseen
    plan = plan.masked_fill(score > 1.0, -1)                                # fewer candidates than r: unused slot
    if r < num_random_blocks:
        plan = F.pad(plan, (0, num_random_blocks - r), value=-1)
    return plan                                                              # (H, nb-2, r)


def block_layout(num_blocks: int, plan: Tensor, window_blocks: int = 3) -> tuple[Tensor, Tensor]:
    """Key blocks of every non-global query block: ids (H, nb-2, S) and validity (H, nb-2, S), S = 2 + w + r.

    Slot order: first global block, the w window blocks i - w//2 ... i + w//2, last global block, the r random
    blocks. A slot is invalid (masked) when its block is outside the sequence, when a window block is a global
    block already in its own slot (i = 1 and i = nb - 2), or when the plan has no random block for it (-1).
    """
    heads = plan.shape[0]
    half = window_blocks // 2
    i = torch.arange(1, num_blocks - 1, device=plan.device)[:, None]                          # (nb-2, 1)
    window = i + torch.arange(-half, half + 1, device=plan.device)                            # (nb-2, w)
    window_ok = (window > 0) & (window < num_blocks - 1)                                      # not global, inside
    first = torch.zeros_like(i)
    last = torch.full_like(i, num_blocks - 1)
    ids = torch.cat([first, window.clamp(0, num_blocks - 1), last], dim=1)                   # (nb-2, 2 + w)
    ok = torch.cat([torch.ones_like(i, dtype=torch.bool), window_ok, torch.ones_like(i, dtype=torch.bool)], dim=1)
    ids = torch.cat([ids.expand(heads, -1, -1), plan.clamp_min(0)], dim=2)                   # (H, nb-2, S)
    ok = torch.cat([ok.expand(heads, -1, -1), plan >= 0], dim=2)                              # (H, nb-2, S)
    return ids, ok


def block_adjacency(num_blocks: int, plan: Tensor, window_blocks: int = 3, *, use_global: bool = True,
                    use_window: bool = True, use_random: bool = True) -> Tensor:
    """The attention graph D on blocks (H, nb, nb), True where query block i attends to key block j (App. D).

    With every part on it is the block mask under which BigBird equals full attention; the switches give the
    graphs of Sec. 2 and Table 1 (W, R + W, W + G, ...).
    """
    heads = plan.shape[0]
    i = torch.arange(num_blocks)[:, None]
    j = torch.arange(num_blocks)[None, :]
    adj = torch.zeros(heads, num_blocks, num_blocks, dtype=torch.bool)
    if use_window:
        adj |= (j - i).abs() <= window_blocks // 2
    if use_global:
        adj |= (i == 0) | (i == num_blocks - 1) | (j == 0) | (j == num_blocks - 1)
    if use_random and plan.shape[1]:
        h, q, _ = torch.meshgrid(torch.arange(heads), torch.arange(1, num_blocks - 1), torch.arange(plan.shape[2]),
                                 indexing="ij")
        keep = plan >= 0
        adj[h[keep], q[keep], plan[keep]] = True
    return adj


@register_attention("bigbird", paper="bigbird")
class BigBirdAttention(nn.Module):
    r"""BigBird-ITC block-sparse self-attention (Zaheer et al. 2020, arXiv:2007.14062, Sec. 2, App. D).

    `block_size` tokens per block (64 in the paper's base models, App. E), `window_blocks` = w = 3,
    `num_random_blocks` = r = 3, first and last block global. The random plan is drawn per head from `seed`
    (default: drawn from torch's CPU generator at construction, so each layer gets its own graph, also when the
    model is built on the meta device), once per number of blocks, and is fixed thereafter, as in the paper's
    static sparse graph; `seed` is a buffer, so a saved model reloads with the same graph. `set_random_plan(plan)`
    installs an external plan (e.g. Hugging Face's).

    A sequence whose length is not a multiple of `block_size` is padded at the end with masked keys, as the
    authors' code pads to a multiple of the block size. `mask` (B, N) is a padding mask (True = real token):
    padded keys get no weight. A query whose keys are all padded outputs zero, as in `core.FullAttention`; an empty
    sequence (N = 0) gives an empty output.

    The paper defines this pattern for encoder self-attention only (Sec. 4, encoder-decoder tasks: sparse
    attention in the encoder, full attention in the decoder), so `causal=True` and a `context`
    (cross-attention) raise `ValueError`. Projections `to_q`, `to_k`, `to_v`, `to_out` are named and shaped as
    in `FullAttention`: BigBird adds no parameters (`seed` is an integer buffer).
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, block_size: int = 64,
                 num_random_blocks: int = 3, window_blocks: int = 3, seed: int | None = None):
        super().__init__()
        if block_size < 1 or num_random_blocks < 0:
            raise ValueError(f"block_size must be >= 1 and num_random_blocks >= 0, got {block_size}, "
                             f"{num_random_blocks}")
        if window_blocks < 1 or window_blocks % 2 == 0:
            raise ValueError(f"window_blocks must be odd (a window centred on the query block), got {window_blocks}")
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        self.block_size, self.num_random_blocks, self.window_blocks = block_size, num_random_blocks, window_blocks
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)           # Q_h, all heads at once
        self.to_k = nn.Linear(dim, inner, bias=False)           # K_h
        self.to_v = nn.Linear(dim, inner, bias=False)           # V_h
        self.to_out = nn.Linear(inner, dim)                     # output projection
        if seed is None:                # torch's CPU generator, also when built on the meta device (archzoo models)
            seed = int(torch.randint(2**31 - 1, (), device="cpu"))
        self.register_buffer("seed", torch.tensor(seed, dtype=torch.long))
        self._plans: dict[tuple[int, int], Tensor] = {}         # (num_blocks, seed) -> plan (H, nb-2, r)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, heads={self.heads}, dim_head={self.dim_head}, block_size={self.block_size}, "
                f"window_blocks={self.window_blocks}, num_random_blocks={self.num_random_blocks}")

    def random_plan(self, num_blocks: int) -> Tensor:
        """The fixed random key blocks (H, nb-2, r) for a sequence of `num_blocks` blocks (see `random_block_plan`)."""
        key = (num_blocks, int(self.seed))
        if key not in self._plans:
            g = torch.Generator().manual_seed(key[1] * 100_003 + num_blocks)
            self._plans[key] = random_block_plan(num_blocks, self.heads, self.num_random_blocks, self.window_blocks, g)
        return self._plans[key]

    def set_random_plan(self, plan: Tensor) -> None:
        """Use `plan` (H, nb-2, r), key-block ids or -1, for sequences of nb blocks instead of the drawn one."""
        nb = check_shape(plan, "H Q R", name="plan", dtype="int", H=self.heads, R=self.num_random_blocks)["Q"] + 2
        if bool(((plan < -1) | (plan >= nb)).any()):
            raise ValueError(f"plan: random block ids must be in [0, {nb}) or -1 for an unused slot")
        self._plans[(nb, int(self.seed))] = plan.detach().to("cpu", torch.long)

    def block_adjacency(self, num_blocks: int) -> Tensor:
        """This attention's graph D on blocks (H, nb, nb) for `num_blocks` blocks."""
        return block_adjacency(num_blocks, self.random_plan(num_blocks), self.window_blocks)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        if context is not None:
            raise ValueError("BigBird defines block-sparse self-attention of an encoder; the paper's decoders use "
                             "full attention for cross-attention (Sec. 4), so `context` is not supported")
        if causal:
            raise ValueError("BigBird defines no causal form: the paper uses its sparse attention only in encoders "
                             "and full attention in decoders (Sec. 4); use attention='full' for causal layers")
        x, _ = attention_inputs(x, None, mask, causal, self.dim, dtype=self.to_out.weight.dtype)
        b, n, _ = x.shape
        if n == 0:                                                       # no token, no block: an empty output
            return self.to_out(x.new_zeros(b, 0, self.heads * self.dim_head))

        bs = self.block_size
        pad = -n % bs
        nb = (n + pad) // bs
        q, k, v = (rearrange(F.pad(f(x), (0, 0, 0, pad)) if pad else f(x), "b (nb s) (h d) -> b h nb s d", s=bs,
                             h=self.heads) for f in (self.to_q, self.to_k, self.to_v))   # (B, H, nb, bs, d)
        keep = None                                                      # (B, nb, bs) key padding, True = real
        if mask is not None or pad:
            real = torch.ones(b, n, dtype=torch.bool, device=x.device) if mask is None else mask
            keep = rearrange(F.pad(real, (0, pad), value=False), "b (nb s) -> b nb s", s=bs)

        out_global = self._global_rows(q[:, :, [0, nb - 1] if nb > 1 else [0]], k, v, keep)   # (B, H, g, bs, d)
        if nb > 2:
            middle = self._sparse_rows(q, k, v, keep, nb)                                    # (B, H, nb-2, bs, d)
            out = torch.cat([out_global[:, :, :1], middle, out_global[:, :, 1:]], dim=2)
        else:
            out = out_global
        out = rearrange(out, "b h nb s d -> b (nb s) (h d)")[:, :n]     # (B, N, H*d)
        return self.to_out(out)                                          # (B, N, dim)

    def _global_rows(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None) -> Tensor:
        """The global query blocks attend to every key: (B, H, g, bs, d) -> (B, H, g, bs, d)."""
        g = q.shape[2]
        q = rearrange(q, "b h g s d -> b h (g s) d")
        k, v = (rearrange(t, "b h nb s d -> b h (nb s) d") for t in (k, v))
        attn_mask = None if keep is None else rearrange(keep, "b nb s -> b 1 1 (nb s)")
        out = self._attend(q, k, v, attn_mask)
        return rearrange(out, "b h (g s) d -> b h g s d", g=g)

    def _sparse_rows(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, nb: int) -> Tensor:
        """Query blocks 1 ... nb-2 attend to their gathered global, window and random key blocks.

        q, k, v: (B, H, nb, bs, d) -> (B, H, nb-2, bs, d). One `index_select` gathers the S = 2 + w + r key blocks
        of every (head, query block) into a slab of S * bs keys; SDPA attends within each slab.
        """
        bsz, h, _, bs, d = k.shape
        ids, ok = (t.to(k.device) for t in block_layout(nb, self.random_plan(nb), self.window_blocks))  # (H, nb-2, S)
        slots = ids.shape[-1]
        head = torch.arange(h, device=k.device)[:, None] * nb                        # row offset of each head
        flat = (ids + head[..., None]).reshape(-1)                                   # rows of (H*nb) key blocks
        k_g, v_g = (t.reshape(bsz, h * nb, bs, d).index_select(1, flat) for t in (k, v))   # (B, H*(nb-2)*S, bs, d)
        k_g, v_g = (rearrange(t, "b (hq sl) s d -> b hq (sl s) d", sl=slots) for t in (k_g, v_g))
        q_m = rearrange(q[:, :, 1:-1], "b h q s d -> b (h q) s d")                      # (B, H*(nb-2), bs, d)
        if keep is not None:                                                         # gathered key padding
            keep_g = keep[:, ids] & ok[None, ..., None]                              # (B, H, nb-2, S, bs)
            attn_mask = rearrange(keep_g, "b h q sl s -> b (h q) 1 (sl s)")
        else:                                          # the window slot that repeats a global block (rows 1, nb-2)
            attn_mask = rearrange(ok[..., None].expand(-1, -1, -1, bs), "h q sl s -> 1 (h q) 1 (sl s)")
        out = self._attend(q_m, k_g, v_g, attn_mask)                                 # (B, H*(nb-2), bs, d)
        return rearrange(out, "b (h q) s d -> b h q s d", h=h)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
        """softmax(q k^T / sqrt(d)) v over the allowed keys (SDPA); a query with no allowed key outputs zero."""
        empty = None
        if attn_mask is not None:
            empty = ~attn_mask.any(-1, keepdim=True)                   # (..., 1, 1) no key at all
            attn_mask = attn_mask | empty
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return out if empty is None else out.masked_fill(empty, 0.0)
