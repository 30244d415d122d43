"""The attention graph of BigBird and its path lengths (Zaheer et al. 2020, arXiv:2007.14062, Sec. 2).

Sec. 2 views attention as a directed graph D on the tokens: an edge from query i to key j when i attends to j,
so information crosses one edge per layer. A sliding window alone needs about n / w layers to connect the two
ends of a sequence; a few random edges per node give an expander-like graph whose shortest paths grow only
logarithmically in n (the Erdos-Renyi argument of Sec. 2), and g global tokens connect any two tokens in two hops
(the star graphs used by Theorems 1 and 2). Distances between tokens of different blocks equal the distances
between their blocks (a block sees its own tokens), so the block graph of `attention.block_adjacency` carries
every path length; `token_adjacency` expands it to tokens.

The same argument holds for a real layer stack, where it can be measured: after L layers output token t depends on
input token s only if the Jacobian block d y_L[t] / d x[s] is nonzero, and (attention being the only layer that
mixes tokens) it is nonzero exactly when the layers' graphs, composed, lead from t to s. `dependency_norms` measures
the Jacobian blocks of a stack, `predicted_reach` composes its graphs, and `PatternAttention` is BigBird's attention
restricted to one of the graphs of Sec. 2 (window only, random + window), the controls of that measurement.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from torch import Tensor, nn

from .attention import BigBirdAttention, block_adjacency, random_block_plan

PATTERNS = {"W": dict(use_global=False, use_window=True, use_random=False),        # window (sliding) only
            "R+W": dict(use_global=False, use_window=True, use_random=True),       # Sec. 2 / Table 1 "R + W"
            "BigBird": dict(use_global=True, use_window=True, use_random=True)}    # R + W + G


def attention_graph(num_blocks: int, pattern: str = "BigBird", num_random_blocks: int = 3, window_blocks: int = 3,
                    generator: torch.Generator | None = None) -> Tensor:
    """One head's block graph (nb, nb) of `pattern` ("W", "R+W" or "BigBird"), random blocks from `generator`."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {sorted(PATTERNS)}, got {pattern!r}")
    plan = random_block_plan(num_blocks, 1, num_random_blocks, window_blocks, generator)
    return block_adjacency(num_blocks, plan, window_blocks, **PATTERNS[pattern])[0]


def token_adjacency(block_adj: Tensor, block_size: int) -> Tensor:
    """The token graph (..., N, N) of a block graph (..., nb, nb): token a attends to b when a's block does to b's."""
    return repeat(block_adj, "... i j -> ... (i s) (j t)", s=block_size, t=block_size)


def path_lengths(adj: Tensor) -> dict:
    """Diameter and mean shortest path (in hops, over ordered pairs u != v) of a directed graph (scipy BFS).

    Both are inf when some node cannot reach another.
    """
    dist = shortest_path(csr_matrix(adj.numpy().astype(np.int8)), directed=True, unweighted=True)
    off = dist[~np.eye(len(dist), dtype=bool)]
    return {"diameter": float(off.max()), "mean_path": float(off.mean())}


class PatternAttention(BigBirdAttention):
    """BigBird's attention restricted to the graph `pattern` of Sec. 2 ("W", "R+W" or "BigBird"), computed densely.

    The same projections and the same per-head random blocks (`random_plan`) as `BigBirdAttention`; softmax attention
    under the token mask of `block_adjacency(..., **PATTERNS[pattern])`, so that "W" (window only) and "R+W" (no
    global blocks) are the ablations of the paper's Table 1 and "BigBird" equals `BigBirdAttention` (tested). It forms
    the n x n mask: a control for small n, not an efficient attention. The length must be a multiple of
    `block_size`; padding masks are not supported.
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, pattern: str = "W",
                 **kwargs):
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {sorted(PATTERNS)}, got {pattern!r}")
        super().__init__(dim, heads, dim_head, dropout, **kwargs)
        self.pattern = pattern

    def block_adjacency(self, num_blocks: int) -> Tensor:
        """This attention's graph (H, nb, nb) for `num_blocks` blocks."""
        return block_adjacency(num_blocks, self.random_plan(num_blocks), self.window_blocks, **PATTERNS[self.pattern])

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        if context is not None or causal or mask is not None:
            raise ValueError("PatternAttention is unmasked encoder self-attention: no context, causal or mask")
        n = x.shape[1]
        if n % self.block_size:
            raise ValueError(f"sequence length must be a multiple of block_size {self.block_size}, got {n}")
        allowed = token_adjacency(self.block_adjacency(n // self.block_size), self.block_size)   # (H, N, N)
        q, k, v = (rearrange(f(x), "b n (h d) -> b h n d", h=self.heads) for f in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.to(x.device),
                                             dropout_p=self.dropout if self.training else 0.0)  # (B, H, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))                          # (B, N, dim)


def predicted_reach(layer_graphs: list[Tensor]) -> Tensor:
    """(L, nb, nb): True where output block i depends on input block j after 1 ... L layers.

    `layer_graphs[l]` (H, nb, nb) is layer l's attention graph; a layer lets block i see block j when some head
    does (the union over heads), and the residual keeps what a block already saw, so
    reach_l = A_l reach_{l-1} (boolean product).
    """
    reach, out = None, []
    for graph in layer_graphs:
        step = graph.any(0) | torch.eye(graph.shape[-1], dtype=torch.bool)       # (nb, nb) union over heads
        reach = step if reach is None else (step.double() @ reach.double()) > 0
        out.append(reach)
    return torch.stack(out)


def dependency_norms(blocks: nn.ModuleList | list[nn.Module], x: Tensor, rows: Tensor, chunk: int = 16,
                     generator: torch.Generator | None = None) -> Tensor:
    """|| u^T d y_l[t] / d x[s] || for every layer l, output token t in `rows` and input token s: (L, len(rows), N).

    `blocks` are applied in turn to `x` (1, N, D); y_l is the output of block l. u is a random vector per
    output token (one vector-Jacobian product per row), so a norm is zero exactly when the Jacobian block is zero
    (almost surely). Rows are batched `chunk` at a time as copies of `x`.
    """
    out = []
    for part in rows.split(chunk):
        xs = x.expand(len(part), -1, -1).clone().requires_grad_(True)               # (R, N, D) one copy per row
        u = torch.randn(len(part), x.shape[-1], generator=generator).to(x)          # (R, D)
        hidden, h = [], xs
        for block in blocks:
            h = block(h)
            hidden.append(h[torch.arange(len(part)), part])                         # (R, D) y_l at row t
        grads = [torch.autograd.grad((y * u).sum(), xs, retain_graph=True)[0].norm(dim=-1) for y in hidden]
        out.append(torch.stack(grads))                                              # (L, R, N)
    return torch.cat(out, dim=1)
