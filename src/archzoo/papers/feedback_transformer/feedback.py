r"""The Feedback Transformer (Fan et al. 2020, arXiv:2002.09402, Sec. 3): every layer attends to memories of all
layers.

At step t the token passes up through L layers; layer l (l = 1..L) attends, instead of to its own layer's past, to
the memory vectors of the past steps (and to the current step's state below it):

    z_t^l     = Attn(x_t^{l-1}, [m_1, ..., m_{t-1}, x_t^{l-1}])                                (Eq. 4, Sec. 3.1)
    x_t^l     = FF(z_t^l)                                  (with pre-norm residuals, as core.TransformerBlock)
    m_t       = \sum_{l=0}^{L} softmax(w)_l x_t^l                                              (Eq. 5)

so the top of step t - 1 reaches the bottom of step t: the computation is recurrent, and training with teacher
forcing is sequential over time (Sec. 3.2). The keys and values of a memory are computed once, by one projection
pair W^K, W^V shared by all layers (Sec. 3.1, "shared key-value projections"), and cached: that cache is the
decoding state. With an attention `span` S, layers see only the last S memories and the cache keeps only those (the
paper varies the memory size, Sec. 4). Positions enter as a learned bias per layer, head and distance t - s added to
the attention logits, a relative encoding as the paper's (the relative position embeddings of Sukhbaatar et al.
2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import check_shape
from ...core.classifier import Classifier
from ...core.embeddings import TokenEmbedding
from ...core.mlp import build_feedforward


@dataclass
class FeedbackState:
    """The decoding state after `steps` steps: the cached memories' keys and values (B, H, M, d), M = steps or, with
    a span, at most the span, and the last memory (B, dim)."""

    keys: Tensor
    values: Tensor
    memory: Tensor | None = None
    steps: int = 0


class FeedbackLayer(nn.Module):
    """One layer: attention of the current state to [memories, itself] with the shared K/V, then a feed-forward.

    Its own W^Q, W^O, LayerNorms, feed-forward and relative position bias (heads, max_len); W^K, W^V are passed in.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_ratio: float, max_len: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)               # W^Q of this layer
        self.to_out = nn.Linear(heads * dim_head, dim)                         # W^O
        self.ff = build_feedforward("mlp", dim, mlp_ratio, 0.0)
        self.position_bias = nn.Parameter(torch.zeros(heads, max_len))         # b[h, t - s]

    def forward(self, x: Tensor, state: FeedbackState, to_k: nn.Linear, to_v: nn.Linear) -> Tensor:   # x (B, dim)
        h = self.norm1(x)
        q = rearrange(self.to_q(h), "b (h d) -> b h 1 d", h=self.heads)                        # (B, H, 1, d)
        k = torch.cat((state.keys, rearrange(to_k(h), "b (h d) -> b h 1 d", h=self.heads)), 2)  # (B, H, t+1, d)
        v = torch.cat((state.values, rearrange(to_v(h), "b (h d) -> b h 1 d", h=self.heads)), 2)
        t = state.keys.shape[2]                                                                  # cached memories
        distance = torch.arange(t, -1, -1, device=x.device)                                      # t - s, s = 0..t
        logits = (q @ k.transpose(-2, -1)).squeeze(2) / math.sqrt(self.dim_head)                # (B, H, t+1)
        weights = (logits + self.position_bias[:, distance]).softmax(-1)
        z = rearrange(torch.einsum("bhs,bhsd->bhd", weights, v), "b h d -> b (h d)")            # (B, H d)
        x = x + self.to_out(z)
        return x + self.ff(self.norm2(x))                                                        # (B, dim)


class FeedbackTransformer(Classifier, nn.Module):
    """Token ids (B, N) -> per-token logits (B, N, num_classes), causal by construction (Sec. 3).

    `step(ids_t, state)` runs one time step for a batch of tokens (B,) and returns (logits (B, C), new state);
    `forward(ids)` is the teacher-forced pass, the same step applied at t = 0..N-1 (the recurrence through the
    memory makes it sequential, Sec. 3.2). `memories(ids)` returns m_1..m_N (B, N, dim) of Eq. 5.
    `core.Classifier`'s interface: `forward_features` gives the normalized top states (B, N, dim), `forward_head` the
    per-token logits.
    """

    def __init__(self, vocab_size: int, num_classes: int, *, dim: int = 64, depth: int = 2, heads: int = 4,
                 dim_head: int = 16, mlp_ratio: float = 4.0, max_len: int = 1024, span: int | None = None):
        super().__init__()
        if span is not None and not 1 <= span <= max_len:
            raise ValueError(f"span must be None or in [1, max_len={max_len}], got {span}")
        self.span = span
        self.vocab_size, self.num_classes, self.max_len = vocab_size, num_classes, max_len
        self.dim, self.heads, self.dim_head, self.num_features = dim, heads, dim_head, dim
        self.embed = TokenEmbedding(vocab_size, dim)                            # x_t^0
        self.to_k = nn.Linear(dim, heads * dim_head, bias=False)               # W^K shared by all layers (Sec. 3.1)
        self.to_v = nn.Linear(dim, heads * dim_head, bias=False)               # W^V shared by all layers
        self.layers = nn.ModuleList(FeedbackLayer(dim, heads, dim_head, mlp_ratio, max_len) for _ in range(depth))
        self.layer_weights = nn.Parameter(torch.zeros(depth + 1))              # w of Eq. 5, over x^0..x^L
        self.memory_norm = nn.LayerNorm(dim)                                   # memories enter K/V normalized
        self.norm = nn.LayerNorm(dim)
        self.head = self.new_head(num_classes)

    def initial_state(self, batch_size: int) -> FeedbackState:
        empty = self.to_k.weight.new_zeros(batch_size, self.heads, 0, self.dim_head)
        return FeedbackState(empty, empty)

    def step(self, ids: Tensor, state: FeedbackState | None = None) -> tuple[Tensor, FeedbackState]:
        """One step: ids (B,) of step t = state.steps -> logits (B, num_classes) and the state with m_t added."""
        x, state = self.step_features(ids, state)
        return self.forward_head(x), state

    def step_features(self, ids: Tensor, state: FeedbackState | None = None) -> tuple[Tensor, FeedbackState]:
        """One step up to the normalized top state (B, dim); see `step`."""
        b = check_shape(ids, "B", name="ids")["B"]
        state = state or self.initial_state(b)
        if self.span is None and state.steps >= self.max_len:
            raise ValueError(f"ids: step {state.steps} is past max_len={self.max_len} of the position bias")
        x = self.embed(ids)                                                    # (B, dim)
        outputs = [x]
        for layer in self.layers:
            x = layer(x, state, self.to_k, self.to_v)
            outputs.append(x)
        mix = self.layer_weights.softmax(0)                                    # Eq. 5
        memory = torch.einsum("l,lbd->bd", mix, torch.stack(outputs))          # m_t (B, dim)
        m = self.memory_norm(memory)
        keep = slice(-self.span if self.span else None, None)                 # the last `span` memories
        keys = torch.cat((state.keys, rearrange(self.to_k(m), "b (h d) -> b h 1 d", h=self.heads)), 2)[:, :, keep]
        values = torch.cat((state.values, rearrange(self.to_v(m), "b (h d) -> b h 1 d", h=self.heads)), 2)[:, :, keep]
        new = FeedbackState(keys, values, memory, state.steps + 1)
        return self.norm(x), new

    def run(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing over ids (B, N): the normalized top states (B, N, dim) and memories (B, N, dim)."""
        b, n = check_shape(ids, "B N", name="ids").values()
        if self.span is None and n > self.max_len:
            raise ValueError(f"ids: sequence length N={n} exceeds max_len={self.max_len}")
        state, features, memories = self.initial_state(b), [], []
        for t in range(n):
            x, state = self.step_features(ids[:, t], state)
            features.append(x)
            memories.append(state.memory)
        if n == 0:
            empty = self.to_k.weight.new_zeros(b, 0, self.dim)
            return empty, empty
        return torch.stack(features, 1), torch.stack(memories, 1)

    def memories(self, ids: Tensor) -> Tensor:
        return self.run(ids)[1]                                                # (B, N, dim)

    def forward_features(self, ids: Tensor) -> Tensor:
        return self.run(ids)[0]                                                # (B, N, dim)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x if pre_logits else self.head(x)                               # (..., num_classes)
