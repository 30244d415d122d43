r"""LSH attention (Kitaev, Kaiser & Levskaya 2020, arXiv:2001.04451, Sec. 2 and Appendix A).

Softmax attention is dominated by the largest dot products, so each query only needs the keys nearest to it.
Reformer finds them with angular locality-sensitive hashing and never forms the n x n matrix:

1. Shared-QK: one projection gives the queries, and the keys are the queries normalised, k_j = q_j / ||q_j||,
   so that h(q_j) = h(k_j) and a query and its key always land in the same bucket (Sec. 2, "Shared-QK").
2. Hash: h(x) = argmax([xR; -xR]) for a random matrix R of size [d_k, b/2] (Sec. 2, "Hashing attention",
   after Andoni et al. 2015), a fresh R for every round, head and forward pass.
3. Sort the positions by (bucket, position) (a stable sort), cut the sorted sequence into chunks of m
   consecutive queries and let each chunk attend to itself and to the chunk before it (Eq. 5,
   m = 2l / n_buckets by default).
4. Inside a chunk, keys of other buckets are masked (Eq. 3 with P_i = {j : h(q_i) = h(k_j)}, Eq. 4); so is
   the query's own position unless it has no other target (Sec. 2, "Causal masking for shared-QK attention",
   m = 10^5), and, with `causal=True`, every later position.
5. n_hashes rounds with independent R cover more of P_i = union_r P_i^(r) (Eq. 6). Each round gives o_i^(r)
   and its normaliser z(i, P_i^(r)); the rounds combine as o_i = sum_r exp(z(i, P_i^(r)) - z(i, P_i)) o_i^(r),
   and a key found in N_ij rounds is down-weighted by m_ij = log N_ij so that it is counted once
   (Appendix A). With these corrections multi-round LSH attention is exactly softmax attention over the union.

`LSHAttention` is registered as `Transformer(attention="reformer")`; `SharedQKAttention`
("reformer_shared_qk") is the same shared-QK attention computed exactly over all keys (the "full attention"
that LSH attention approximates, Table 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import attention_inputs
from ...registry import register_attention

MASK_VALUE = -1e9          # m = infinity: the logit of a key outside P_i (finite: a lone own key keeps a row finite)
SELF_PENALTY = 1e5         # m = 10^5, subtracted from q_i . k_i (Appendix A): attend to yourself only when nothing else


def _mask_values(dtype: torch.dtype) -> tuple[float, float]:
    """MASK_VALUE and SELF_PENALTY, scaled down for float16, whose range (6.5e4) holds neither."""
    if torch.finfo(dtype).max < 1e9:
        return -1e4, 1e3
    return MASK_VALUE, SELF_PENALTY


def _check_self_attention(module: nn.Module, x: Tensor, context: Tensor | None, mask: Tensor | None) -> Tensor:
    """The protocol's checks for a shared-QK attention (no context); x in the parameters' dtype."""
    if context is not None:
        raise ValueError(f"{type(module).__name__} shares queries and keys (Sec. 2, shared-QK), so it has no "
                         "cross-attention form: pass context=None")
    return attention_inputs(x, None, mask, False, module.dim, dtype=module.to_out.weight.dtype)[0]


def default_n_buckets(n: int, chunk_length: int) -> int | tuple[int, int]:
    """The paper's bucket count for length n: n_buckets = 2n / m (Sec. 2, "we set m = 2l / n_buckets").

    Above 64 buckets the hash is factorised into two smaller ones, b = b1 * b2 with h = h1 + b1 h2 (as in the
    authors' trax code): the random rotation then has (b1 + b2) / 2 columns instead of b / 2, which keeps the
    hashing cost linear in n.
    """
    b = max(2, 2 * n // chunk_length)
    b += b % 2
    if b <= 64:
        return b
    b1 = max((d for d in range(2, math.isqrt(b) + 1, 2) if b % d == 0 and (b // d) % 2 == 0), default=None)
    return b if b1 is None else (b1, b // b1)


def hash_vectors(x: Tensor, rotations: Tensor, n_buckets: int | tuple[int, ...]) -> Tensor:
    r"""Angular LSH h(x) = argmax([xR; -xR]) (Sec. 2, Fig. 1): one bucket per round and head.

    x (B, H, N, d), rotations (H, d, R, sum(b_f) / 2) -> buckets (B, H, R, N) in [0, prod(b_f)). A factorised
    hash (a tuple of bucket counts b_f) uses consecutive column blocks of R, h = h_1 + b_1 h_2 + b_1 b_2 h_3 ...
    """
    rotated = torch.einsum("bhnd,hdrk->bhrnk", x, rotations)                  # (B, H, R, N, sum b_f / 2)
    factors = (n_buckets,) if isinstance(n_buckets, int) else tuple(n_buckets)
    buckets, start, scale = 0, 0, 1
    for b in factors:
        r = rotated[..., start:start + b // 2]
        buckets = buckets + scale * torch.cat([r, -r], dim=-1).argmax(dim=-1)  # argmax over [xR; -xR]
        start, scale = start + b // 2, scale * b
    return buckets


class _SortGather(torch.autograd.Function):
    """y[b, h, l] = x[b, h, index[b, h, l]] along the sequence axis, where `index` visits every row of x the same
    number of times R (R = 1: a permutation; R = n_hashes: one sorted copy per round). The gradient is gathered
    back with `inverse` (slot of each (round, row)) and summed over rounds, instead of `gather`'s scatter-add."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, inverse: Tensor) -> Tensor:     # x (B, H, N, ...), index (B, H, R*N)
        ctx.save_for_backward(inverse)
        ctx.rows = x.shape[2]
        return _gather_rows(x, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inverse,) = ctx.saved_tensors
        g = _gather_rows(grad, inverse)                                      # (B, H, R*N, ...) in (round, row) order
        return g.unflatten(2, (-1, ctx.rows)).sum(dim=2), None, None


def _gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """x[b, h, index[b, h, l], ...] for x (B, H, L, ...) and index (B, H, L').

    Vectors (4-d x) are copied whole with one `index_select` over x's rows, several times faster on CPU than
    `gather` with an index expanded over the last axis; x may be any permutation of a contiguous tensor (e.g.
    the heads view of a projection), so no copy of x is made.
    """
    if x.dim() == 3:
        return x.gather(2, index)
    d = x.shape[-1]
    order = sorted(range(3), key=lambda i: -x.stride(i))
    if x.stride(-1) != 1 or any(x.stride(i) % d for i in range(3)) or not x.permute(*order, 3).is_contiguous():
        x = x.contiguous()
    s0, s1, s2 = (x.stride(i) // d for i in range(3))
    b, h = index.shape[:2]
    flat = (torch.arange(b, device=x.device)[:, None, None] * s0 + torch.arange(h, device=x.device)[:, None] * s1
            + index * s2)                                                     # row of x[b, h, index] in memory
    rows = x.as_strided((x.numel() // d, d), (d, 1), x.storage_offset())     # x's memory as rows of d values
    return rows.index_select(0, flat.flatten()).view(*index.shape, d)


def sort_gather(x: Tensor, index: Tensor, inverse: Tensor) -> Tensor:
    """Rows of x (B, H, N, ...) in the order `index` (B, H, R*N) with entries in [0, N); `inverse[l]` is the
    slot that holds row l % N of round l // N."""
    return _SortGather.apply(x, index, inverse)


class _ChunkAttention(torch.autograd.Function):
    """Softmax attention of each chunk's queries to its window of keys, returning o and z = logsumexp(logits).

    forward(q (..., m, d), k (..., w, d), v (..., w, d), outside (..., m, w) bool or None, log_dups (..., m, w) or
    None, p dropout) -> (o (..., m, d), z (..., m, 1)), with logits = q k^T - log N_ij, MASK_VALUE where `outside`,
    and SELF_PENALTY subtracted on the diagonal of the last m keys (each query's own key). One fused kernel instead
    of a chain of autograd ops: the logits are masked in place, only the attention weights are kept for the
    backward pass, and there
        d logits = attn * (d attn - <d o, o> + d z)        (<d o_i, o_i> = sum_j d attn_ij attn_ij)
    which is exact for the masked entries too (their weight is exactly 0).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, outside: Tensor | None, log_dups: Tensor | None,
                p: float) -> tuple[Tensor, Tensor]:
        m = q.shape[-2]
        dots = q @ k.transpose(-1, -2)                                       # (..., m, w)
        if log_dups is not None:
            dots.sub_(log_dups)                                              # m_ij = log N_ij
        mask_value, self_penalty = _mask_values(dots.dtype)
        if outside is not None:
            dots.masked_fill_(outside, mask_value)                          # m_ij = infinity
        dots[..., -m:].diagonal(dim1=-2, dim2=-1).sub_(self_penalty)          # m_ii = 10^5
        attn = dots.softmax(dim=-1)
        lse = dots.amax(dim=-1, keepdim=True) - attn.amax(dim=-1, keepdim=True).log()   # attn_max = exp(max - z)
        del dots
        keep = None
        if p > 0:
            keep = torch.rand_like(attn) >= p                                # dropout on the attention weights
            weights = attn * keep / (1 - p)
        else:
            weights = attn
        out = weights @ v                                                    # (..., m, d)
        ctx.p = p
        ctx.save_for_backward(q, k, v, attn, keep, out)
        return out, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out: Tensor, g_lse: Tensor):
        q, k, v, attn, keep, out = ctx.saved_tensors
        weights = attn if keep is None else attn * keep / (1 - ctx.p)
        g_v = weights.transpose(-1, -2) @ g_out
        g_attn = g_out @ v.transpose(-1, -2)                                 # (..., m, w)
        if keep is not None:
            g_attn.mul_(keep / (1 - ctx.p))
        g_dots = g_attn.sub_((g_out * out).sum(dim=-1, keepdim=True) - g_lse).mul_(attn)
        return g_dots @ k, g_dots.transpose(-1, -2) @ q, g_v, None, None, None


def chunk_attention(q: Tensor, k: Tensor, v: Tensor, outside: Tensor | None = None, log_dups: Tensor | None = None,
                    dropout: float = 0.0) -> tuple[Tensor, Tensor]:
    """(o, z) of softmax attention within chunks; see `_ChunkAttention`."""
    return _ChunkAttention.apply(q, k, v, outside, log_dups, dropout)


def look_back(x: Tensor) -> Tensor:
    """Each chunk preceded by the chunk before it (Eq. 5): (B, H, C, m, ...) -> (B, H, C, 2m, ...).

    The first chunk looks back at the last one (the sorted sequence is circular, as in the authors' code); the
    bucket and causal masks remove what it should not see there. With a single chunk there is nothing before it.
    """
    if x.shape[2] == 1:
        return x
    return torch.cat([x.roll(1, dims=2), x], dim=3)


@register_attention("reformer", paper="reformer")
class LSHAttention(nn.Module):
    r"""Multi-round LSH self-attention with shared queries and keys (Kitaev et al. 2020, Sec. 2, Appendix A).

    For every round r a random rotation hashes the shared query/key vectors into buckets, the positions are
    sorted by (bucket, position), and each chunk of `chunk_length` sorted queries attends to its own chunk and
    the previous one, restricted to its own bucket (Eq. 3-5):

        o_i^(r) = \sum_{j \in \tilde{P}_i^(r)} \exp(q_i \cdot k_j - m_ij^(r) - z(i, P_i^(r))) v_j,   k_j = q_j / ||q_j||
        o_i     = \sum_r \exp(z(i, P_i^(r)) - z(i, P_i)) o_i^(r)                                      (Appendix A)

    with m_ij^(r) = infinity for j outside the bucket (and, causal, for j > i), 10^5 for j = i, and log N_ij
    otherwise, N_ij the number of rounds in which j shares i's bucket. As in the authors' code the logits are
    q_i . k_j without the 1/sqrt(d) of Eq. 1: their keys have length sqrt(d), which cancels it.

    Arguments besides the protocol's `(dim, heads, dim_head, dropout)`:
    - `chunk_length` m: sorted queries per chunk; the sequence length must be a multiple of it.
    - `n_hashes`: rounds of hashing (LSH-1, LSH-2, ... in Table 2).
    - `n_buckets`: b (even), or a tuple (b1, b2, ...) for a factorised hash; default 2n / m (`default_n_buckets`).
    - `attend_across_buckets=True` attends to the whole own-and-previous chunk, bucket or not, and combines
      rounds without the duplicate correction, as transformers' and reformer-pytorch's implementations do.
    - `hash_seed`: draw the rotations from a generator seeded with it at every call (deterministic hashing, like
      transformers' `hash_seed`); default: from torch's global generator, a fresh R per call.

    Supports `causal=True` and a padding `mask` (B, N), True = keep: padded keys are masked and padded positions
    are hashed into an extra bucket of their own, so they take no room in the chunks of real buckets. There is
    no cross-attention form (keys are the queries): `context` raises a ValueError.

    Causal masking removes every later key, but with several chunks per round the sort also depends on later
    tokens: a later token's bucket can shift an earlier key out of (or into) a query's two-chunk window, so an
    output can change with the tokens after it (the paper's scheme, as in the authors' code). With one chunk per
    round (N = `chunk_length`) the outputs depend on earlier tokens only.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, *,
                 chunk_length: int = 64, n_hashes: int = 4, n_buckets: int | tuple[int, ...] | None = None,
                 attend_across_buckets: bool = False, hash_seed: int | None = None):
        super().__init__()
        if chunk_length < 1 or n_hashes < 1:
            raise ValueError(f"chunk_length and n_hashes must be >= 1, got {chunk_length} and {n_hashes}")
        if n_buckets is not None:
            factors = (n_buckets,) if isinstance(n_buckets, int) else tuple(n_buckets)
            if not factors or any(b < 2 or b % 2 for b in factors):
                raise ValueError(f"n_buckets must be even and >= 2 (argmax over [xR; -xR]), got {n_buckets}")
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        self.chunk_length, self.n_hashes, self.n_buckets = chunk_length, n_hashes, n_buckets
        self.attend_across_buckets, self.hash_seed = attend_across_buckets, hash_seed
        inner = heads * dim_head
        self.to_qk = nn.Linear(dim, inner, bias=False)      # shared W^Q = W^K
        self.to_v = nn.Linear(dim, inner, bias=False)       # W^V
        self.to_out = nn.Linear(inner, dim, bias=False)     # W^O (no bias, as in the authors' code)

    def buckets_for(self, n: int) -> int | tuple[int, ...]:
        return self.n_buckets if self.n_buckets is not None else default_n_buckets(n, self.chunk_length)

    def random_rotations(self, n_buckets: int | tuple[int, ...], dtype: torch.dtype, device) -> Tensor:
        """R for every head and round: (H, d, n_hashes, sum(b_f) / 2), standard normal entries."""
        factors = (n_buckets,) if isinstance(n_buckets, int) else tuple(n_buckets)
        shape = (self.heads, self.dim_head, self.n_hashes, sum(factors) // 2)
        generator = None if self.hash_seed is None else torch.Generator().manual_seed(self.hash_seed)
        return torch.randn(shape, generator=generator, dtype=dtype).to(device)

    def hash(self, qk: Tensor, keep: Tensor | None = None) -> tuple[Tensor, int]:
        """Buckets (B, H, R, N) of the shared query/key vectors and the number of buckets per round.

        Padded positions (keep False) go to an extra last bucket.
        """
        n_buckets = self.buckets_for(qk.shape[2])
        with torch.no_grad():
            buckets = hash_vectors(qk, self.random_rotations(n_buckets, qk.dtype, qk.device), n_buckets)
        total = math.prod((n_buckets,) if isinstance(n_buckets, int) else n_buckets)
        if keep is not None:
            buckets = buckets.masked_fill(~keep[:, None, None, :], total)
            total += 1
        return buckets, total

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        x = _check_self_attention(self, x, context, mask)
        b, n, _ = x.shape
        m, rounds = self.chunk_length, self.n_hashes
        if n % m:
            raise ValueError(f"input: sequence length N={n} must be a multiple of chunk_length={m} "
                             f"(pad it, or pick a chunk_length that divides it)")
        qk = rearrange(self.to_qk(x), "b n (h d) -> b h n d", h=self.heads)      # (B, H, N, d)
        v = rearrange(self.to_v(x), "b n (h d) -> b h n d", h=self.heads)        # (B, H, N, d)
        buckets, n_total = self.hash(qk, mask)                                   # (B, H, R, N)

        # sort by (round, bucket, position): every key is distinct, so the sort is stable by construction
        with torch.no_grad():
            pos = torch.arange(n, device=x.device)
            round_offset = torch.arange(rounds, device=x.device)[:, None] * n_total   # (R, 1)
            key = ((buckets + round_offset) * n + pos).flatten(2)                   # (B, H, R*N)
            sorted_key, perm = key.sort(dim=-1)                                     # perm: slot -> round * N + pos
            inverse = torch.empty_like(perm).scatter_(-1, perm, torch.arange(rounds * n, device=x.device)
                                                      .expand_as(perm))            # (round * N + pos) -> slot
            s_pos = sorted_key % n                                                  # position of each sorted slot
            s_bucket = sorted_key // n                                              # round * n_total + bucket

        sq = rearrange(sort_gather(qk, s_pos, inverse), "b h (c m) d -> b h c m d", m=m)   # (B, H, C, m, d)
        sv = look_back(rearrange(sort_gather(v, s_pos, inverse), "b h (c m) d -> b h c m d", m=m))
        sk = look_back(F.normalize(sq, dim=-1))                                  # (B, H, C, 2m, d): k = q / ||q||
        # each chunk (B, H, C, m) attends to its window of 2m keys, C = R*N/m
        with torch.no_grad():
            outside = self._outside(s_pos, s_bucket, mask, causal, m)            # j not in P_i^(r), bool or None
            log_dups = None
            if not self.attend_across_buckets and rounds > 1:
                log_dups = self._duplicate_counts(buckets, s_pos, m, x.dtype)   # log N_ij (Appendix A)
        # o_i^(r) (B, H, C, m, d) and z(i, P_i^(r)) (B, H, C, m, 1), in sorted order
        so, lse = chunk_attention(sq, sk, sv, outside, log_dups, self.dropout if self.training else 0.0)
        so = rearrange(so, "b h c m d -> b h (c m) d")                           # (B, H, R*N, d)

        o = sort_gather(so, inverse, perm)                                       # back to (round, position) order
        o = rearrange(o, "b h (r n) d -> b h r n d", r=rounds)                   # (B, H, R, N, d)
        if rounds > 1:
            lse = sort_gather(rearrange(lse, "b h c m 1 -> b h (c m)"), inverse, perm)
            weights = rearrange(lse, "b h (r n) -> b h r n 1", r=rounds).softmax(dim=2)   # exp(z_r - z), App. A
            out = (o * weights).sum(dim=2)                                       # (B, H, N, d)
        else:
            out = o[:, :, 0]
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))              # (B, N, dim)

    def _outside(self, s_pos: Tensor, s_bucket: Tensor, mask: Tensor | None, causal: bool, m: int) -> Tensor | None:
        """Keys of a query's window that are not in P_i^(r): another bucket (Eq. 3-4), a later position (causal),
        padding, and (across buckets) a copy of its own key from another round. (B, H, C, m, 2m) bool or None."""
        outside = None
        if not self.attend_across_buckets:
            q_bucket = rearrange(s_bucket, "b h (c m) -> b h c m 1", m=m)
            outside = look_back(rearrange(s_bucket, "b h (c m) -> b h c m", m=m))[..., None, :] != q_bucket
        if causal:
            q_pos = rearrange(s_pos, "b h (c m) -> b h c m 1", m=m)
            later = look_back(rearrange(s_pos, "b h (c m) -> b h c m", m=m))[..., None, :] > q_pos
            outside = later if outside is None else outside | later
        if mask is not None:
            keep = _gather_rows(mask[:, None].expand(-1, s_pos.shape[1], -1), s_pos)     # (B, H, R*N)
            padded = ~look_back(rearrange(keep, "b h (c m) -> b h c m", m=m))[..., None, :]
            outside = padded if outside is None else outside | padded
        if self.attend_across_buckets and s_pos.shape[-1] > m:
            # a query's own key from the previous round, where one round's sorted sequence runs into the next:
            # only ever a second copy of itself, which no bucket mask removes here
            q_pos = rearrange(s_pos, "b h (c m) -> b h c m 1", m=m)
            prev = rearrange(s_pos, "b h (c m) -> b h c m", m=m).roll(1, dims=2)[..., None, :] == q_pos
            copy = torch.cat([prev, torch.zeros_like(prev)], dim=-1)
            outside = copy if outside is None else outside | copy
        return outside

    @staticmethod
    def _duplicate_counts(buckets: Tensor, s_pos: Tensor, m: int, dtype: torch.dtype) -> Tensor:
        """log N_ij, N_ij = |{r : h_r(i) = h_r(j)}|, for each query/key pair of the chunked layout (B, H, C, m, 2m)."""
        per_position = rearrange(buckets, "b h r n -> b h n r")                 # (B, H, N, R)
        q = rearrange(_gather_rows(per_position, s_pos), "b h (c m) r -> b h c m r", m=m)
        k = look_back(q)                                                         # (B, H, C, 2m, R)
        counts = torch.zeros(*q.shape[:-1], k.shape[-2], dtype=torch.uint8, device=buckets.device)
        for r in range(q.shape[-1]):                                             # a handful of rounds
            counts += q[..., r, None] == k[..., None, :, r]
        return counts.clamp_(min=1).to(dtype).log_()


@register_attention("reformer_shared_qk", paper="reformer")
class SharedQKAttention(nn.Module):
    r"""Full (exact) shared-QK attention: the attention LSH attention approximates (Kitaev et al. 2020, Sec. 2).

        o_i = \sum_{j \in P_i} \exp(q_i \cdot k_j - m_ij - z(i, P_i)) v_j,   k_j = q_j / ||q_j||      (Eq. 2-3)

    over every key (every earlier key when causal), with a query's own key masked (m = 10^5) unless it has no
    other target. Same parameters and names as `LSHAttention` (`to_qk`, `to_v`, `to_out`), so a model trained
    with one can be evaluated with the other (the "Full attention" column of Table 2). O(n^2) time and memory.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0):
        super().__init__()
        self.dim, self.heads, self.dim_head, self.dropout = dim, heads, dim_head, dropout
        inner = heads * dim_head
        self.to_qk = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        x = _check_self_attention(self, x, context, mask)
        n = x.shape[1]
        q = rearrange(self.to_qk(x), "b n (h d) -> b h n d", h=self.heads)       # (B, H, N, d)
        v = rearrange(self.to_v(x), "b n (h d) -> b h n d", h=self.heads)
        pos = torch.arange(n, device=x.device)
        outside = pos[None, :] > pos[:, None] if causal else torch.zeros(n, n, dtype=torch.bool, device=x.device)
        if mask is not None:
            outside = outside | ~mask[:, None, None, :]                          # (B, 1, N, N)
        mask_value, self_penalty = _mask_values(x.dtype)
        bias = torch.zeros(outside.shape, dtype=x.dtype, device=x.device).masked_fill_(outside, mask_value)
        bias.diagonal(dim1=-2, dim2=-1).sub_(self_penalty)                      # m_ii = 10^5
        out = F.scaled_dot_product_attention(q, F.normalize(q, dim=-1), v, attn_mask=bias, scale=1.0,
                                             dropout_p=self.dropout if self.training else 0.0)   # (B, H, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))              # (B, N, dim)
