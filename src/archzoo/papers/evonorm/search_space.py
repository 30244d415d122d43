r"""The layer search space: normalization-activation layers as computation graphs (Liu et al. 2020, Sec. 2, Table 1).

A layer is a directed acyclic graph that maps a tensor x (B, C, H, W) to a tensor of the same shape. It starts
from four initial nodes (Sec. 2, "Layer search space"):

    0: x    the input          1: 0    a constant zero tensor
    2: v_0  a learnable per-channel vector, initialised to zeros
    3: v_1  a learnable per-channel vector, initialised to ones

Every intermediate node applies one primitive of Table 1 to one or two earlier nodes (tensors of different shapes
broadcast); the last node is the layer's output, which is then scaled and shifted per channel by gamma and beta.

Table 1, element-wise ops:  x + y,  x * y,  x / y,  max(x, y),  -x,  sigmoid(x),  tanh(x),  exp(x),
                            sign(x) ln|x|,  |x|,  x^2,  sign(x) sqrt|x|
Table 1, aggregate ops:     mu_I(x) (1st moment),  sqrt(s^2_I(x) + eps) (standard deviation),
                            over I in {(b,w,h): batch, (w,h): instance, (w,h,c/g): group}

Aggregates over (b,w,h) make a layer batch-dependent: as in BatchNorm they use the batch's statistic in training
and a moving average of it at inference. EvoNorm-B0 and -S0 are two points of this space (`EVONORM_B0`,
`EVONORM_S0`).

Code: `PRIMITIVES` (Table 1), `LayerGraph` (a layer), `GraphLayer` (the nn.Module that evaluates it),
`random_graph` (random generation, Sec. 2) and `mutate` (the mutation of Sec. 3).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import check_shape

INITIAL_NODES = ("x", "0", "v0", "v1")                # Sec. 2: input, zero tensor, v_0 (zeros), v_1 (ones)
AXES = {"bwh": "batch", "wh": "instance", "whcg": "group"}   # the index sets I of the aggregate ops


def signed_log(x: Tensor) -> Tensor:
    """sign(x) ln|x| (Table 1, Log)."""
    return torch.sign(x) * torch.log(torch.abs(x))


def signed_sqrt(x: Tensor) -> Tensor:
    """sign(x) sqrt|x| (Table 1, Sqrt)."""
    return torch.sign(x) * torch.sqrt(torch.abs(x))


@dataclass(frozen=True)
class Primitive:
    """One op of Table 1: its arity, how it prints, and (element-wise ops) the function that computes it."""

    name: str
    arity: int
    expression: str                       # Table 1's formula, {0} and {1} for the operands
    fn: Callable | None = None            # element-wise ops; aggregates are computed by GraphLayer.aggregate
    axes: str | None = None               # aggregates: "bwh", "wh" or "whcg"


ELEMENTWISE = [
    Primitive("add", 2, "{0} + {1}", torch.add),
    Primitive("mul", 2, "{0} * {1}", torch.mul),
    Primitive("div", 2, "{0} / {1}", torch.div),
    Primitive("max", 2, "max({0}, {1})", torch.maximum),
    Primitive("neg", 1, "-{0}", torch.neg),
    Primitive("sigmoid", 1, "sigmoid({0})", torch.sigmoid),
    Primitive("tanh", 1, "tanh({0})", torch.tanh),
    Primitive("exp", 1, "exp({0})", torch.exp),
    Primitive("log", 1, "sign({0}) ln|{0}|", signed_log),
    Primitive("abs", 1, "|{0}|", torch.abs),
    Primitive("square", 1, "{0}^2", torch.square),
    Primitive("sqrt", 1, "sign({0}) sqrt|{0}|", signed_sqrt),
]
AGGREGATES = [p for axes in AXES for p in (Primitive(f"mean_{axes}", 1, f"mu_{axes}({{0}})", axes=axes),
                                           Primitive(f"std_{axes}", 1, f"s_{axes}({{0}})", axes=axes))]
PRIMITIVES: dict[str, Primitive] = {p.name: p for p in ELEMENTWISE + AGGREGATES}   # Table 1


INFIX = ("add", "mul", "div", "neg", "square")         # ops whose compound operands need parentheses


def atomic(expression: str) -> bool:
    """Whether a printed expression has no space outside parentheses (needs none around it as an operand)."""
    depth = 0
    for ch in expression:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == " " and depth == 0:
            return False
    return True


@dataclass(frozen=True)
class Node:
    """An intermediate node: `op` applied to the nodes at `inputs` (indices of earlier nodes)."""

    op: str
    inputs: tuple[int, ...]


@dataclass(frozen=True)
class LayerGraph:
    """A layer of the search space: intermediate nodes after the four initial ones; the last node is the output.

    Node i of the graph is `INITIAL_NODES[i]` for i < 4 and `nodes[i - 4]` after; a node only reads earlier nodes.
    """

    nodes: tuple[Node, ...]

    def __post_init__(self):
        if not self.nodes:
            raise ValueError("a layer graph needs at least one intermediate node")
        for i, node in enumerate(self.nodes, start=len(INITIAL_NODES)):
            if node.op not in PRIMITIVES:
                raise ValueError(f"node {i}: unknown op {node.op!r}; Table 1 has {', '.join(PRIMITIVES)}")
            if len(node.inputs) != PRIMITIVES[node.op].arity or not all(0 <= j < i for j in node.inputs):
                raise ValueError(f"node {i}: {node.op} needs {PRIMITIVES[node.op].arity} earlier nodes, "
                                 f"got inputs {node.inputs}")

    @property
    def output(self) -> int:
        return len(INITIAL_NODES) + len(self.nodes) - 1

    def node(self, i: int) -> Node:
        return self.nodes[i - len(INITIAL_NODES)]

    def active(self) -> set[int]:
        """The nodes the output depends on (itself included)."""
        seen, stack = set(), [self.output]
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                if i >= len(INITIAL_NODES):
                    stack.extend(self.node(i).inputs)
        return seen

    def depends_on_x(self) -> bool:
        return 0 in self.active()

    def batch_dependent(self) -> bool:
        """Whether an active node aggregates over the batch (the B series) or not (the S series)."""
        return any(PRIMITIVES[self.node(i).op].axes == "bwh" for i in self.active() if i >= len(INITIAL_NODES))

    def expression(self, i: int | None = None) -> str:
        """The formula of node i (default: the output), e.g. 'x / max(s_bwh(x), v1 * x + s_wh(x))'."""
        i = self.output if i is None else i
        if i < len(INITIAL_NODES):
            return INITIAL_NODES[i]
        node = self.node(i)
        args = [self.expression(j) for j in node.inputs]
        if node.op in INFIX:
            args = [a if atomic(a) else f"({a})" for a in args]
        return PRIMITIVES[node.op].expression.format(*args)

    def __str__(self) -> str:
        return self.expression()


def graph(*nodes: tuple) -> LayerGraph:
    """A LayerGraph from (op, input, ...) tuples: `graph(("std_bwh", 0), ("div", 0, 4))`."""
    return LayerGraph(tuple(Node(op, tuple(inputs)) for op, *inputs in nodes))


EVONORM_B0 = graph(                                                      # x / max(s_bwh(x), v1 x + s_wh(x))
    ("std_bwh", 0),          # 4: sqrt(s^2_{b,w,h}(x) + eps)
    ("mul", 3, 0),           # 5: v1 * x
    ("std_wh", 0),           # 6: sqrt(s^2_{w,h}(x) + eps)
    ("add", 5, 6),           # 7: v1 x + s_{w,h}(x)
    ("max", 4, 7),           # 8
    ("div", 0, 8),           # 9: the output
)
EVONORM_S0 = graph(                                                      # x sigmoid(v1 x) / s_{w,h,c/g}(x)
    ("mul", 3, 0),           # 4: v1 * x
    ("sigmoid", 4),          # 5
    ("mul", 0, 5),           # 6: x sigmoid(v1 x)
    ("std_whcg", 0),         # 7: sqrt(s^2_{w,h,c/g}(x) + eps)
    ("div", 6, 7),           # 8: the output
)


class GraphLayer(nn.Module):
    r"""Evaluates a `LayerGraph` on (B, C, H, W): y = gamma * graph(x, 0, v_0, v_1) + beta.

    Each batch aggregate node keeps a moving average of its statistic (the mean for mu_{b,w,h}, the variance for
    s_{b,w,h}) with decay 1 - momentum, used in eval mode in place of the batch statistic, as BatchNorm does.
    Group aggregates use `groups` groups of C / groups channels.
    """

    def __init__(self, layer_graph: LayerGraph, num_channels: int, groups: int = 32, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        if groups < 1 or num_channels % groups:
            raise ValueError(f"groups ({groups}) must be >= 1 and divide num_channels ({num_channels})")
        self.graph, self.num_channels, self.groups, self.eps, self.momentum = (layer_graph, num_channels, groups,
                                                                              eps, momentum)
        self.v0 = nn.Parameter(torch.zeros(num_channels))                 # v_0, zeros (Sec. 2)
        self.v1 = nn.Parameter(torch.ones(num_channels))                  # v_1, ones
        self.weight = nn.Parameter(torch.ones(num_channels))              # gamma
        self.bias = nn.Parameter(torch.zeros(num_channels))               # beta
        for i in sorted(layer_graph.active()):
            if i >= len(INITIAL_NODES) and PRIMITIVES[layer_graph.node(i).op].axes == "bwh":
                start = 0.0 if layer_graph.node(i).op.startswith("mean") else 1.0
                self.register_buffer(f"running_{i}", torch.full((num_channels,), start))

    def aggregate(self, i: int, op: Primitive, a: Tensor) -> Tensor:
        """mu_I(a) or sqrt(s^2_I(a) + eps), biased, kept in the broadcastable shape of `a` with the axes I of size 1."""
        want_mean = op.name.startswith("mean")
        if op.axes == "whcg":
            g = rearrange(a, "b (g c) h w -> b g (c h w)", g=self.groups)
            stat = g.mean(-1, keepdim=True) if want_mean else g.var(-1, unbiased=False, keepdim=True)
            stat = rearrange(stat.expand_as(g), "b g (c h w) -> b (g c) h w", c=a.shape[1] // self.groups,
                             h=a.shape[2])
        elif op.axes == "wh":
            stat = a.mean((2, 3), keepdim=True) if want_mean else a.var((2, 3), unbiased=False, keepdim=True)
        else:                                                              # "bwh": batch statistic or moving average
            running = getattr(self, f"running_{i}")
            if self.training:
                stat = a.mean((0, 2, 3), keepdim=True) if want_mean else a.var((0, 2, 3), unbiased=False,
                                                                               keepdim=True)
                with torch.no_grad():
                    running.lerp_(stat.detach().flatten().to(running.dtype).expand_as(running), self.momentum)
            else:
                stat = running.view(1, -1, 1, 1)
        return stat if want_mean else torch.sqrt(stat + self.eps)

    def forward(self, x: Tensor) -> Tensor:                                # (B, C, H, W)
        check_shape(x, "B C H W", C=self.num_channels)
        c = self.num_channels
        values: list[Tensor | None] = [x, x.new_zeros(1, c, 1, 1), self.v0.view(1, c, 1, 1), self.v1.view(1, c, 1, 1)]
        active = self.graph.active()
        for i, node in enumerate(self.graph.nodes, start=len(INITIAL_NODES)):
            if i not in active:                                            # dead nodes do not change the output
                values.append(None)
                continue
            op, args = PRIMITIVES[node.op], [values[j] for j in node.inputs]
            values.append(op.fn(*args) if op.axes is None else self.aggregate(i, op, args[0]))
        out = torch.broadcast_to(values[-1], x.shape)                      # (B, C, H, W)
        return out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, graph='{self.graph}'"


def random_node(rng: random.Random, index: int) -> Node:
    """A node at position `index`: an op drawn uniformly from Table 1, its inputs uniformly from earlier nodes."""
    op = rng.choice(list(PRIMITIVES.values()))
    return Node(op.name, tuple(rng.randrange(index) for _ in range(op.arity)))


def random_graph(rng: random.Random, num_nodes: int) -> LayerGraph:
    """A random layer (Sec. 2): `num_nodes` intermediate nodes generated one after the other."""
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    return LayerGraph(tuple(random_node(rng, len(INITIAL_NODES) + k) for k in range(num_nodes)))


def mutate(layer_graph: LayerGraph, rng: random.Random) -> LayerGraph:
    """The mutation (Sec. 3, "Mutation"): pick an intermediate node uniformly at random, replace its op with a
    random one of Table 1 and draw its new predecessor(s) uniformly from the nodes before it. The graph keeps its
    size."""
    k = rng.randrange(len(layer_graph.nodes))
    nodes = list(layer_graph.nodes)
    nodes[k] = random_node(rng, len(INITIAL_NODES) + k)
    return LayerGraph(tuple(nodes))
