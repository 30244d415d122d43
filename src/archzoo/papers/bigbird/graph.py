"""The attention graph of BigBird and its path lengths (Zaheer et al. 2020, arXiv:2007.14062, Sec. 2).

Sec. 2 views attention as a directed graph D on the tokens: an edge from query i to key j when i attends to j,
so information crosses one edge per layer. A sliding window alone needs about n / w layers to connect the two
ends of a sequence; a few random edges per node give an expander-like graph whose shortest paths grow only
logarithmically in n (the Erdos-Renyi argument of Sec. 2), and g global tokens connect any two tokens in two hops
(the star graphs used by Theorems 1 and 2). Distances between tokens of different blocks equal the distances
between their blocks (a block sees its own tokens), so the block graph of `attention.block_adjacency` carries
every path length; `token_adjacency` expands it to tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import repeat
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from torch import Tensor

from .attention import block_adjacency, random_block_plan

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
    """The token graph (N, N) of a block graph (nb, nb): token a attends to b when a's block attends to b's."""
    return repeat(block_adj, "i j -> (i s) (j t)", s=block_size, t=block_size)


def path_lengths(adj: Tensor) -> dict:
    """Diameter and mean shortest path (in hops, over ordered pairs u != v) of a directed graph (scipy BFS).

    Both are inf when some node cannot reach another.
    """
    dist = shortest_path(csr_matrix(adj.numpy().astype(np.int8)), directed=True, unweighted=True)
    off = dist[~np.eye(len(dist), dtype=bool)]
    return {"diameter": float(off.max()), "mean_path": float(off.mean())}
