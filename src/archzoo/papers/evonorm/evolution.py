r"""The evolutionary search for normalization-activation layers, at laptop scale (Liu et al. 2020, Sec. 3).

Each candidate is a `LayerGraph` (search_space.py). The search is tournament selection with aging (the
regularized evolution of Real et al. 2019 that the paper builds on, Sec. 3 "Evolution"):

    population <- P random layers that pass the rejections
    repeat:  sample T members at random; the most accurate one is the parent;
             child <- mutate(parent); evaluate it; if it is not rejected, it joins the population
             and the oldest member leaves.

Cheap rejections filter the huge, sparse search space before the expensive proxy training (Sec. 3 "Rejection
mechanisms"):

- lightweight (free; ours, see `lightweight_rejection`): the output must depend on x; it must be finite (no
  NaN/inf output or gradient) on a random probe; it must not reduce to an affine map of x (identity, a constant,
  a per-channel scale), which neither normalizes nor activates and which gamma, beta already provide;
- stability (the paper's): the worst-case gradient norm of the proxy network, found by gradient ascent on its
  weights from their initial values, must stay below a threshold (`worst_case_grad_norm`);
- quality (the paper's: less than 20% CIFAR-10 accuracy after 100 training steps is rejected): a short training
  run on the proxy task must reach `quality_threshold` percent validation accuracy (`quality_rejection`).

A candidate that survives is trained on the proxy task; its validation accuracy is its fitness, its test accuracy
is only reported. The paper evaluates every candidate on K = 3 anchor architectures and selects on the Pareto
front of the K accuracies; we use one architecture (a ResNet-8), so the tournament winner is the most accurate.

`random_search` is the control the paper compares evolution with: the same rejections and proxy task, fresh random
layers in place of mutations. Drawn from the same random stream, its first candidates are evolution's initial
population, so with an equal budget the two differ only in how they propose the rest.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ...engine.train import evaluate, train
from .models import norm_act_resnet, s0_groups
from .search_space import GraphLayer, LayerGraph, mutate, random_graph


def graph_norm_act(layer_graph: LayerGraph) -> Callable[[int], GraphLayer]:
    """`norm_layer(channels)` for a candidate: its GraphLayer, group aggregates with `s0_groups(channels)` groups."""
    return lambda c: GraphLayer(layer_graph, c, groups=s0_groups(c))


def lightweight_rejection(layer_graph: LayerGraph, seed: int = 0) -> str | None:
    """Why a layer is rejected before any training ("no dependency on x", "non-finite on a probe" or
    "affine in x"), or None if it passes.

    The probe is a float64 batch (8, 8, 6, 6) of standard normal values through the layer at its initial
    parameters, in training and in eval mode; the affine test fits y = a_c x + b_c per channel by least squares.
    """
    if not layer_graph.depends_on_x():
        return "no dependency on x"
    x = torch.randn(8, 8, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    layer = GraphLayer(layer_graph, 8, groups=s0_groups(8)).double()
    x.requires_grad_(True)
    y = layer(x)
    (grad,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    with torch.no_grad():
        y_eval = layer.eval()(x)
    if not (y.isfinite().all() and y_eval.isfinite().all() and (grad is None or grad.isfinite().all())):
        return "non-finite on a probe"
    xs, ys = x.detach().transpose(0, 1).reshape(8, -1), y.detach().transpose(0, 1).reshape(8, -1)   # (C, B*H*W)
    design = torch.stack([xs, torch.ones_like(xs)], dim=-1)                                           # (C, N, 2)
    coef = torch.linalg.lstsq(design, ys.unsqueeze(-1)).solution                                      # (C, 2, 1)
    residual = (design @ coef).squeeze(-1) - ys
    if residual.norm() <= 1e-6 * (ys.norm() + 1e-12):
        return "affine in x"
    return None


def worst_case_grad_norm(model: nn.Module, batch: tuple, steps: int, step_size: float) -> float:
    """The largest ||dL/dtheta||_2 found by `steps` of gradient ascent on the weights theta (Sec. 3, "Stability").

    Each step moves every weight tensor by `step_size` times its own norm along the ascent direction of the
    gradient norm (double backpropagation); returns inf as soon as anything is non-finite.
    """
    x, y = batch
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    worst = 0.0
    for t in range(steps + 1):
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=t < steps, allow_unused=True)
        norm = torch.sqrt(sum(g.square().sum() for g in grads if g is not None))
        if not torch.isfinite(norm):
            return math.inf
        worst = max(worst, float(norm.detach()))
        if t == steps:
            break
        ascent = torch.autograd.grad(norm, params, allow_unused=True)
        with torch.no_grad():
            for p, a in zip(params, ascent):
                if a is not None and a.norm() > 0:
                    p.add_(a / a.norm() * p.norm().clamp_min(1e-3) * step_size)
    return worst


@dataclass
class ProxyTask:
    """The proxy task every candidate is trained on: a small image classification set and a CIFAR ResNet.

    `train`, `val` (fitness) and `test` (reporting only) are TensorDatasets. The network is
    `norm_act_resnet(layer, depth, width)`, trained with SGD (momentum 0.9, weight decay 5e-4) and a cosine
    schedule after a short warm-up.
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    in_chans: int
    depth: int = 8
    width: int = 8
    steps: int = 200
    batch_size: int = 64
    lr: float = 0.1
    quality_steps: int = 50
    quality_threshold: float = 20.0
    stability_steps: int = 3
    stability_step_size: float = 0.05
    stability_threshold: float = 1e8
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def model(self, norm_act: str | Callable[[int], nn.Module], seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return norm_act_resnet(norm_act, self.depth, self.num_classes, self.in_chans, width=self.width)

    def fit(self, norm_act: str | Callable[[int], nn.Module], steps: int, seed: int) -> nn.Module:
        """A freshly initialised proxy network with layer `norm_act`, trained for `steps` steps (raises
        FloatingPointError if the loss becomes non-finite)."""
        model = self.model(norm_act, seed)
        train(model, self.train, steps=steps, batch_size=self.batch_size, optimizer="sgd", lr=self.lr,
              momentum=0.9, weight_decay=5e-4, warmup_steps=max(1, steps // 10), schedule="cosine", seed=seed,
              device=self.device, progress=False)
        return model

    def accuracy(self, model: nn.Module, split: str) -> float:
        return evaluate(model, getattr(self, split), device=self.device)["accuracy"]


@dataclass
class Candidate:
    """One evaluated layer: `status` is "valid" or why it was rejected ("unstable", "low quality", "diverged")."""

    graph: LayerGraph
    origin: str                               # "random" (initial population) or "mutation"
    status: str
    val_accuracy: float | None = None         # fitness: proxy validation accuracy, percent
    test_accuracy: float | None = None
    batch_dependent: bool = False

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    def to_dict(self) -> dict:
        return {"layer": str(self.graph), "origin": self.origin, "status": self.status,
                "val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy,
                "batch_dependent": self.batch_dependent}


def quality_rejection(task: ProxyTask, norm_act: Callable[[int], nn.Module], seed: int) -> str | None:
    """"low quality" if `task.quality_steps` of training leave validation accuracy under `task.quality_threshold`,
    "diverged" if the loss became non-finite, else None."""
    try:
        model = task.fit(norm_act, task.quality_steps, seed)
    except FloatingPointError:
        return "diverged"
    return "low quality" if task.accuracy(model, "val") < task.quality_threshold else None


def evaluate_candidate(task: ProxyTask, layer_graph: LayerGraph, origin: str, seed: int = 0) -> Candidate:
    """Stability check, quality check, then proxy training of a layer that passed the lightweight rejection."""
    norm_act = graph_norm_act(layer_graph)
    candidate = Candidate(layer_graph, origin, "valid", batch_dependent=layer_graph.batch_dependent())
    x, y = task.train.tensors
    probe = (x[:task.batch_size].to(task.device), y[:task.batch_size].to(task.device))
    norm = worst_case_grad_norm(task.model(norm_act, seed).to(task.device), probe, task.stability_steps,
                                task.stability_step_size)
    if not norm < task.stability_threshold:
        candidate.status = "unstable"
        return candidate
    if (reason := quality_rejection(task, norm_act, seed)) is not None:
        candidate.status = reason
        return candidate
    try:
        model = task.fit(norm_act, task.steps, seed)
    except FloatingPointError:
        candidate.status = "diverged"
        return candidate
    candidate.val_accuracy, candidate.test_accuracy = task.accuracy(model, "val"), task.accuracy(model, "test")
    return candidate


@dataclass
class SearchResult:
    history: list[Candidate]                  # every candidate that reached the expensive checks, in order
    lightweight_rejections: Counter           # reason -> number of graphs rejected for free
    population: list[Candidate]               # the final population

    @property
    def random_candidates(self) -> list[Candidate]:
        """The valid random layers of the initial population: the baseline a search must beat."""
        return [c for c in self.history if c.origin == "random" and c.valid]

    @property
    def best(self) -> Candidate:
        """The search's answer: the valid candidate with the highest validation accuracy."""
        return max((c for c in self.history if c.valid), key=lambda c: c.val_accuracy)


def propose(rng: random.Random, make: Callable[[], LayerGraph], counts: Counter, max_tries: int,
            exclude: set[str]) -> LayerGraph:
    """Draw graphs from `make` until one passes the lightweight rejection and is not in `exclude` (by formula)."""
    for _ in range(max_tries):
        g = make()
        if str(g) in exclude:
            continue
        reason = lightweight_rejection(g, seed=rng.randrange(2**31))
        if reason is None:
            return g
        counts[reason] += 1
    raise RuntimeError(f"no layer passed the lightweight rejection in {max_tries} tries")


def evaluator(task: ProxyTask, seed: int, history: list[Candidate], seen: set[str],
              cache: dict[str, Candidate] | None) -> Callable[[LayerGraph, str], Candidate]:
    """`add(graph, origin)`: evaluate a layer (or take its result from `cache`, keyed by formula: training is seeded
    and deterministic, so a search with the same `seed` would get the same numbers), record it in `history` and
    `seen`, and return it."""
    def add(g: LayerGraph, origin: str) -> Candidate:
        seen.add(str(g))
        if cache is not None and str(g) in cache:
            candidate = replace(cache[str(g)], origin=origin)
        else:
            candidate = evaluate_candidate(task, g, origin, seed)
            if cache is not None:
                cache[str(g)] = candidate
        history.append(candidate)
        return candidate
    return add


def regularized_evolution(task: ProxyTask, *, population_size: int, cycles: int, tournament_size: int,
                          num_nodes: int, seed: int = 0, max_tries: int = 10_000,
                          cache: dict[str, Candidate] | None = None) -> SearchResult:
    """Tournament selection with aging over layers of `num_nodes` intermediate nodes (see the module docstring).

    The initial population is filled with random layers until `population_size` of them are valid; then each of
    `cycles` cycles mutates a tournament winner once (a mutation that leaves the layer's formula unchanged, e.g.
    one of a dead node, is drawn again). A layer already evaluated is not trained again: training is seeded and
    deterministic, so its result would be the same. `cache` (formula -> Candidate) shares results between
    searches run with the same `seed`.
    """
    if not 1 <= tournament_size <= population_size:
        raise ValueError(f"tournament_size must be in 1..population_size ({population_size}), got {tournament_size}")
    rng = random.Random(seed)
    counts: Counter = Counter()
    history: list[Candidate] = []
    seen: set[str] = set()
    population: deque[Candidate] = deque()
    add = evaluator(task, seed, history, seen, cache)

    while len(population) < population_size:
        if len(history) >= max_tries:
            raise RuntimeError(f"only {len(population)} valid random layers in {max_tries} evaluations")
        c = add(propose(rng, lambda: random_graph(rng, num_nodes), counts, max_tries, seen), "random")
        if c.valid:
            population.append(c)
    for _ in range(cycles):
        parent = max(rng.sample(list(population), tournament_size), key=lambda c: c.val_accuracy)
        c = add(propose(rng, lambda p=parent: mutate(p.graph, rng), counts, max_tries, seen), "mutation")
        if c.valid:
            population.append(c)
            population.popleft()                                           # aging: the oldest member dies
    return SearchResult(history, counts, list(population))


def random_search(task: ProxyTask, *, budget: int, num_nodes: int, seed: int = 0, max_tries: int = 10_000,
                  cache: dict[str, Candidate] | None = None) -> SearchResult:
    """Random search with the same rejections: `budget` random layers (each new, passing the lightweight
    rejection) go through the stability and quality checks and the proxy training; the best is the valid one with
    the highest validation accuracy.

    It draws from the same random stream as `regularized_evolution(seed=seed)`, so its first candidates are
    evolution's initial population, evaluated once when both share `cache`; `population` holds the valid layers.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1 candidate, got {budget}")
    rng = random.Random(seed)
    counts: Counter = Counter()
    history: list[Candidate] = []
    seen: set[str] = set()
    add = evaluator(task, seed, history, seen, cache)
    for _ in range(budget):
        add(propose(rng, lambda: random_graph(rng, num_nodes), counts, max_tries, seen), "random")
    return SearchResult(history, counts, [c for c in history if c.valid])
