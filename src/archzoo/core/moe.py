"""Mixture-of-experts feed-forward layer, top-1 (Switch Transformer) and top-2 (GShard), with expert parallelism.

    ff = MoE(dim=256, num_experts=8, k=1, capacity_factor=1.25)                  # Switch (Fedus et al. 2021)
    ff = MoE(dim=256, num_experts=8, k=2, capacity_factor=2.0, random_routing=True, group_size=512)   # GShard
    Transformer(256, depth=4, feedforward=lambda d: MoE(d, num_experts=8))

A router (a linear map, computed in float32) gives each token a softmax over E experts; the token goes to its
top-k experts, each of which is a two-layer feed-forward network, and the layer returns their outputs weighted by
the gates. Each expert takes at most `capacity` tokens of a group; the tokens beyond it are dropped (the layer
outputs 0 for them, so they pass through the block's residual connection unchanged). `aux_loss` holds the
load-balancing loss (and the router z-loss) of the latest forward, which `engine.trainer.Trainer` adds to the loss.

Expert parallelism (GShard Sec. 3.2, Switch Sec. 2.2 / Fig. 3): given an `exchange` (`archzoo.engine.distributed`
satisfies `TokenExchange`) and W processes, each process holds E / W experts and a copy of the router; every
process routes its own tokens, sends each to the process of its expert with `exchange.all_to_all` (sizes first)
and receives the outputs with `exchange.all_to_all_reverse`. The exchange is injected because core/ does not
import engine/.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import unknown
from .checks import check_shape
from .mlp import ACTIVATIONS


class TokenExchange(Protocol):
    """What expert parallelism needs from a distributed runtime (`archzoo.engine.distributed` has it)."""

    def world_size(self, group=None) -> int: ...

    def rank(self, group=None) -> int: ...

    def all_to_all(self, tokens: Tensor, counts: Tensor, group=None) -> tuple[Tensor, Tensor]: ...

    def all_to_all_reverse(self, outputs: Tensor, received_counts: Tensor, counts: Tensor, group=None) -> Tensor: ...


@dataclass
class Routing:
    """The routing of G groups of S tokens to E experts, k choices per token (GShard Alg. 1)."""

    expert: Tensor      # (G, S, k) long: the chosen experts, best first
    gate: Tensor        # (G, S, k): combine weights, 0 where the choice was dropped
    kept: Tensor        # (G, S, k) bool: the choice fits in its expert's capacity (and survived random routing)
    probs: Tensor       # (G, S, E): router probabilities


def expert_capacity(tokens_per_group: int, num_experts: int, capacity_factor: float | None) -> int:
    """Switch Eq. 3: capacity = ceil(tokens per group / experts x capacity factor); None: no token is dropped."""
    if capacity_factor is None:
        return tokens_per_group
    return math.ceil(tokens_per_group / num_experts * capacity_factor)


def route(logits: Tensor, k: int, capacity: int, random_routing: bool = False,
          generator: torch.Generator | None = None) -> Routing:
    """Top-k routing with a capacity per expert and group (Switch Sec. 2.1; GShard Sec. 2.2 and Alg. 1).

    logits: (G, S, E). Tokens claim slots in their order within the group; all first choices come before any
    second choice (GShard Alg. 1), so a second choice is dropped first. Top-1 gates are the router probability
    p_i(x) of the chosen expert (Switch Eq. 2); top-2 gates are g1 / (g1 + g2) and g2 / (g1 + g2). With
    `random_routing` the second expert is used only with probability min(1, 2 g2) (normalized g2).
    """
    if k not in (1, 2):
        raise ValueError(f"k (experts per token) must be 1 (Switch) or 2 (GShard), got {k}")
    num_experts = logits.shape[-1]
    probs = logits.softmax(-1)                                          # (G, S, E)
    gate, expert = probs.topk(k, dim=-1)                                # (G, S, k)
    chosen = torch.ones_like(expert, dtype=torch.bool)
    if k == 2:
        gate = gate / gate.sum(-1, keepdim=True)
        if random_routing:
            u = torch.rand(gate.shape[:-1], generator=generator, device=gate.device, dtype=gate.dtype)
            chosen[..., 1] = 2 * gate[..., 1].detach() > u
    kept, used = [], 0                                                   # used: (G, 1, E) slots taken so far
    for j in range(k):
        mask = F.one_hot(expert[..., j], num_experts) * chosen[..., j, None]     # (G, S, E)
        position = mask.cumsum(1) - 1 + used                             # slot of the token in its expert
        fits = (position < capacity) & mask.bool()
        kept.append(fits.any(-1))                                        # (G, S)
        used = used + fits.sum(1, keepdim=True)
    kept = torch.stack(kept, -1)                                         # (G, S, k)
    return Routing(expert=expert, gate=gate * kept, kept=kept, probs=probs)


def load_balancing_loss(probs: Tensor, expert: Tensor) -> Tensor:
    """Switch Eq. 4-6: E * sum_i f_i P_i, averaged over groups.

    probs: (G, S, E) router probabilities; expert: (G, S) each token's first choice (before capacity).
    f_i = fraction of tokens whose first choice is expert i (Eq. 5), P_i = mean router probability of i (Eq. 6).
    It is 1 under uniform routing. GShard's l_aux = (1/E) sum_e (c_e / S) m_e (Alg. 1) is the same, divided by E^2.
    """
    num_experts = probs.shape[-1]
    f = F.one_hot(expert, num_experts).to(probs.dtype).mean(1)           # (G, E), Eq. 5
    p = probs.mean(1)                                                    # (G, E), Eq. 6
    return num_experts * (f * p).sum(-1).mean()


def router_z_loss(logits: Tensor) -> Tensor:
    """ST-MoE (Zoph et al. 2022, arXiv:2202.08906, Eq. 5): mean over tokens of (log sum_j exp x_j)^2."""
    return torch.logsumexp(logits, -1).square().mean()


class Experts(nn.Module):
    """E position-wise feed-forward networks without biases (T5, Switch): E_i(x) = act(x W_in_i) W_out_i.

    `w_in[i]` (hidden, dim) and `w_out[i]` (dim, hidden) are expert i's weights, each like `nn.Linear.weight` and
    each its own parameter, as in T5 / Hugging Face's experts (one stacked (E, hidden, dim) tensor would cost a copy
    of all the experts' weights in every backward pass, where the per-expert slices are stacked back together).
    `dropout` on the hidden activations is Switch's expert dropout (Sec. 2.4).
    """

    def __init__(self, num_experts: int, dim: int, hidden_dim: int, act: str | Callable[[], nn.Module] = "relu",
                 dropout: float = 0.0):
        super().__init__()
        if isinstance(act, str):
            if act not in ACTIVATIONS:
                raise unknown("activation", act, ACTIVATIONS)
            act = ACTIVATIONS[act]
        self.w_in = nn.ParameterList([torch.empty(hidden_dim, dim) for _ in range(num_experts)])
        self.w_out = nn.ParameterList([torch.empty(dim, hidden_dim) for _ in range(num_experts)])
        self.act, self.drop = act(), nn.Dropout(dropout)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, scale: float = 1.0) -> None:
        """Truncated normal of mean 0 and std sqrt(scale / fan_in), cut at 2 std (Switch Sec. 2.4; the paper's
        reduced init is scale = 0.1), drawn for all experts of `w_in`, then of `w_out`, at once."""
        for weights in (self.w_in, self.w_out):
            w = torch.empty(len(weights), *weights[0].shape, device=weights[0].device, dtype=weights[0].dtype)
            std = (scale / w.shape[-1]) ** 0.5
            nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
            for param, value in zip(weights, w):
                param.copy_(value)

    def forward(self, x: Tensor, counts: list[int]) -> Tensor:           # (M, dim) sorted by expert
        chunks = x.split(counts)                                         # counts[i] tokens for expert i
        out = [F.linear(self.drop(self.act(F.linear(c, w_in))), w_out)
               for c, w_in, w_out in zip(chunks, self.w_in, self.w_out)]
        return torch.cat(out)                                            # (M, dim)


class MoE(nn.Module):
    """A sparsely-gated mixture-of-experts feed-forward layer (B, N, dim) -> (B, N, dim).

    - `k=1` is the Switch layer (Fedus et al. 2021, arXiv:2101.03961, Sec. 2.1), `k=2` GShard's top-2 gating
      (Lepikhin et al. 2020, arXiv:2006.16668, Sec. 2.2) with `random_routing` of the second expert.
    - The B*N tokens are split into groups of `group_size` consecutive tokens (None: one group), routed
      independently; each expert takes `expert_capacity(group_size, E, capacity_factor)` tokens per group.
    - The router is computed in float32 or wider, outside autocast (Switch Sec. 2.4, selective precision).
    - `aux_loss` = `balance_weight` x `load_balancing_loss` + `z_weight` x `router_z_loss`; `routing_stats`
      holds the latest forward's fraction of dropped tokens (no expert took them) and `load`, the tokens whose
      first choice is each expert before capacity (f_i of Switch Eq. 5 times the tokens).
    - `exchange` (+ `group`): expert parallelism over the processes of `group`; this process then holds experts
      rank * E / W ... (rank + 1) * E / W - 1, whose parameters are tagged `expert_parallel = True` (a data-
      parallel wrapper must leave them alone).
    """

    def __init__(self, dim: int, num_experts: int, hidden_dim: int | None = None, k: int = 1,
                 capacity_factor: float | None = 1.0, group_size: int | None = None, random_routing: bool = False,
                 balance_weight: float = 0.01, z_weight: float = 0.0, act: str | Callable[[], nn.Module] = "relu",
                 dropout: float = 0.0, exchange: TokenExchange | None = None, group=None):
        super().__init__()
        if k not in (1, 2) or num_experts < k:
            raise ValueError(f"k must be 1 or 2 and at most num_experts ({num_experts}), got {k}")
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be > 0 or None, got {capacity_factor}")
        world = exchange.world_size(group) if exchange is not None else 1
        if num_experts % world:
            raise ValueError(f"num_experts ({num_experts}) must be divisible by the {world} expert-parallel processes")
        self.dim, self.num_experts, self.k, self.capacity_factor = dim, num_experts, k, capacity_factor
        self.group_size, self.random_routing = group_size, random_routing
        self.balance_weight, self.z_weight = balance_weight, z_weight
        self.exchange, self.group, self.world = exchange, group, world
        self.num_local = num_experts // world
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = Experts(self.num_local, dim, hidden_dim or 4 * dim, act, dropout)
        if world > 1:
            for p in self.experts.parameters():
                p.expert_parallel = True
        self.aux_loss: Tensor | None = None
        self.routing_stats: dict | None = None

    @torch.no_grad()
    def load_shard(self, full: MoE) -> MoE:
        """Copy the router and this process's experts (its E / W of them) from `full`, the same layer in one process
        with all E experts: how a model trained (or initialised) in one process is split for expert parallelism."""
        if (full.num_experts, full.dim, full.world) != (self.num_experts, self.dim, 1):
            raise ValueError(f"expected a one-process MoE of {self.num_experts} experts on dim {self.dim}, got "
                             f"{full.num_experts} experts on dim {full.dim} over {full.world} processes")
        first = (self.exchange.rank(self.group) if self.exchange is not None else 0) * self.num_local
        self.router.weight.copy_(full.router.weight)
        for i in range(self.num_local):
            self.experts.w_in[i].copy_(full.experts.w_in[first + i])
            self.experts.w_out[i].copy_(full.experts.w_out[first + i])
        return self

    def route(self, x: Tensor) -> tuple[Tensor, Routing]:
        """Router logits (G, S, E) of the tokens x (T, dim) and their routing, in float32 or wider."""
        t = len(x)
        s = self.group_size or max(t, 1)
        if t % s:
            raise ValueError(f"the {t} tokens must split into groups of group_size={s}")
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            logits = F.linear(x.to(dtype), self.router.weight.to(dtype)).view(t // s, s, self.num_experts)
        capacity = expert_capacity(s, self.num_experts, self.capacity_factor)
        return logits, route(logits, self.k, capacity, self.random_routing and self.training)

    def forward(self, x: Tensor) -> Tensor:                              # (..., dim)
        check_shape(x, "... D", dtype="float", D=self.dim)
        shape, x = x.shape, x.reshape(-1, self.dim)                      # (T, dim)
        logits, r = self.route(x)
        self.aux_loss = self.balance_weight * load_balancing_loss(r.probs, r.expert[..., 0])
        if self.z_weight:
            self.aux_loss = self.aux_loss + self.z_weight * router_z_loss(logits)
        self.routing_stats = {"dropped": 1 - r.kept.any(-1).float().mean(),          # tokens with no expert
                              "load": torch.bincount(r.expert[..., 0].flatten(), minlength=self.num_experts)}
        token = torch.arange(len(x), device=x.device).view(*r.kept.shape[:2], 1).expand_as(r.kept)[r.kept]   # (K,)
        expert, gate = r.expert[r.kept], r.gate[r.kept]                   # (K,)
        order = expert.argsort(stable=True)                              # by expert, hence by process
        y = self.apply_experts(x[token[order]], expert[order])           # (K, dim)
        y = y * gate[order, None].to(y.dtype)                            # Switch Eq. 2 / GShard Alg. 1 combine
        return x.new_zeros(x.shape).index_add(0, token[order], y).view(shape)   # dropped tokens: 0

    def apply_experts(self, tokens: Tensor, expert: Tensor) -> Tensor:
        """Each token (K, dim), sorted by `expert` (K,), through its expert, on whichever process holds it."""
        counts = torch.bincount(expert, minlength=self.num_experts).view(self.world, self.num_local)   # (W, E/W)
        if self.exchange is None:
            return self.experts(tokens, counts[0].tolist())
        received, received_counts = self.exchange.all_to_all(tokens, counts, self.group)   # by source, then expert
        local = torch.arange(self.num_local, device=tokens.device).repeat(self.world)
        regroup = local.repeat_interleave(received_counts.flatten()).argsort(stable=True)  # by local expert
        out = self.experts(received[regroup], received_counts.sum(0).tolist())[regroup.argsort()]
        return self.exchange.all_to_all_reverse(out, received_counts, counts, self.group)
