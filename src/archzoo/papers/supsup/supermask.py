r"""Supermasks over fixed random weights (Wortsman et al. 2020, arXiv:2006.14769, Sec. 3; Ramanujan et al. 2020,
arXiv:1911.13299, "edge-popup").

A layer's weights W are drawn once and never trained. Each task i learns only real-valued scores S^i of W's shape;
its supermask M^i keeps the weights whose scores are in the top k fraction by magnitude (edge-popup) and the
layer computes with W \odot M^i. The top-k is not differentiable, so the backward pass sends the gradient of
the mask straight through to the scores:

    forward:  M = top_k(|S|)                  backward:  dL/dS = dL/dM \odot sign(S)

The weights are signed constants (Sec. 3; Ramanujan et al. Sec. 4.2): every entry is +-sqrt(2 / fan_in), the
standard deviation of Kaiming's normal initialisation, with a random sign. With a vector alpha of task
coefficients, the layer computes with the superposition of every task's mask (Eq. 3):

    W \odot (\sum_i alpha_i M^i)

which is what one-shot task inference differentiates (see `inference.py`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, autograd, nn


class TopKMask(autograd.Function):
    """The edge-popup mask: 1 on the `round(k * numel)` largest entries of `scores`, 0 elsewhere; the gradient
    passes straight through (Ramanujan et al. 2020, Sec. 3; SupSup Sec. 3). Call it on |S|."""

    @staticmethod
    def forward(ctx, scores: Tensor, k: float) -> Tensor:
        keep = round(k * scores.numel())
        mask = torch.zeros_like(scores)
        mask.view(-1)[scores.flatten().topk(keep, sorted=False).indices] = 1.0
        return mask

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None                     # straight-through: dL/dscores = dL/dmask


def top_k_mask(scores: Tensor, k: float) -> Tensor:
    """The supermask of `scores`: the top `k` fraction by magnitude, |S| (edge-popup)."""
    return TopKMask.apply(scores.abs(), k)


@torch.no_grad()
def signed_constant_(weight: Tensor) -> Tensor:
    """Fill `weight` in place with +-sqrt(2 / fan_in), each sign a fair coin (the signed Kaiming constant)."""
    fan_in = weight[0].numel()                                   # in_features, or in_channels / groups * kh * kw
    return weight.copy_(torch.randint_like(weight, 2) * 2 - 1).mul_(math.sqrt(2.0 / fan_in))


class Supermask(nn.Module):
    """The shared part of a supermask layer: fixed weights `weight` (a buffer: no optimizer ever sees it), one
    score tensor per task in `scores`, and the task selection.

    - `task` (int): the layer computes with W \\odot M^task;
    - `alphas` (a (num_tasks,) tensor, or None): with W \\odot sum_i alpha_i M^i (Eq. 3) instead. The stacked
      masks of the superposition are kept until a score tensor changes (its in-place version counter, its dtype
      or its device), so that inferring the task of many batches computes them once.
    """

    def init_supermask(self, weight_shape: tuple[int, ...], num_tasks: int, sparsity: float) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        if not 0.0 < sparsity <= 1.0:
            raise ValueError(f"sparsity (the fraction k of weights each mask keeps) must be in (0, 1], got {sparsity}")
        self.num_tasks, self.sparsity = num_tasks, sparsity
        self.register_buffer("weight", signed_constant_(torch.empty(weight_shape)))
        self.scores = nn.ParameterList(nn.Parameter(self.init_scores(weight_shape)) for _ in range(num_tasks))
        self.task, self.alphas, self._stacked = 0, None, None

    @staticmethod
    def init_scores(shape: tuple[int, ...]) -> Tensor:
        """Scores start as PyTorch's default (Kaiming uniform, a = sqrt(5)) layer weights, as in the authors' code."""
        scores = torch.empty(shape)
        nn.init.kaiming_uniform_(scores, a=math.sqrt(5))
        return scores

    def mask(self, task: int) -> Tensor:
        """M^task, differentiable (straight-through) in the scores of `task`."""
        if not 0 <= task < self.num_tasks:
            raise ValueError(f"task must be in 0..{self.num_tasks - 1}, got {task}")
        return top_k_mask(self.scores[task], self.sparsity)

    def superpose(self, alphas: Tensor | None) -> None:
        """Compute with sum_i alpha_i M^i (Eq. 3) from now on; None goes back to the single mask of `task`."""
        if alphas is not None and alphas.shape != (self.num_tasks,):
            raise ValueError(f"alphas: expected shape ({self.num_tasks},), got {tuple(alphas.shape)}")
        self.alphas = alphas

    def stacked_masks(self) -> Tensor:
        """(num_tasks, *W): every task's mask, constant (no gradient to the scores), cached while they stand still."""
        key = tuple((s._version, s.dtype, s.device) for s in self.scores)
        if self._stacked is None or self._stacked[0] != key:
            with torch.no_grad():
                self._stacked = key, torch.stack([self.mask(i) for i in range(self.num_tasks)])
        return self._stacked[1]

    def effective_weight(self) -> Tensor:
        """W \\odot M^task, or W \\odot sum_i alpha_i M^i under a superposition (Eq. 3)."""
        if self.alphas is None:
            return self.weight * self.mask(self.task)
        mix = torch.tensordot(self.alphas.to(self.weight.dtype), self.stacked_masks(), dims=1)   # (*W)
        return self.weight * mix

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_tasks={self.num_tasks}, sparsity={self.sparsity}"


class SupermaskLinear(Supermask):
    """A linear layer without bias whose fixed weights (out_features, in_features) are masked per task."""

    def __init__(self, in_features: int, out_features: int, num_tasks: int = 1, sparsity: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.init_supermask((out_features, in_features), num_tasks, sparsity)

    def forward(self, x: Tensor) -> Tensor:                        # (..., in_features) -> (..., out_features)
        return F.linear(x, self.effective_weight())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}" + super().extra_repr()


class SupermaskConv2d(Supermask):
    """A 2-D convolution without bias whose fixed weights (out, in / groups, kh, kw) are masked per task."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, num_tasks: int = 1, sparsity: float = 0.5):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.init_supermask((out_channels, in_channels // groups, kh, kw), num_tasks, sparsity)

    def forward(self, x: Tensor) -> Tensor:                        # (B, C_in, H, W) -> (B, C_out, H', W')
        return F.conv2d(x, self.effective_weight(), None, self.stride, self.padding, self.dilation, self.groups)


def supermask_layers(model: nn.Module) -> list[Supermask]:
    """Every supermask layer of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, Supermask)]


def set_task(model: nn.Module, task: int) -> nn.Module:
    """Make every supermask layer of `model` compute with the mask of `task` (and leave any superposition)."""
    layers = supermask_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no supermask layers (see `supermask_`)")
    for layer in layers:
        layer.superpose(None)
        layer.mask(task)                                           # checks the range before anything changes
        layer.task = task
    return model


def task_scores(model: nn.Module, task: int) -> list[nn.Parameter]:
    """The scores of `task` in every supermask layer: all that training task `task` changes."""
    return [layer.scores[task] for layer in supermask_layers(model)]


def supermask_(model: nn.Module, num_tasks: int, sparsity: float = 0.5) -> nn.Module:
    """Turn any network into a SupSup network in place: every `nn.Linear` and `nn.Conv2d` becomes a supermask
    layer with fresh signed-constant weights and `num_tasks` score tensors; biases are dropped (the paper's
    networks have none) and every other parameter (normalisation gains) is frozen where it is, so that the
    scores are all that trains. The layers are replaced below `model` (a bare layer: build its supermask layer)."""
    _replace_layers(model, num_tasks, sparsity)
    if not supermask_layers(model):
        raise ValueError(f"supermask_: found no nn.Linear or nn.Conv2d below {type(model).__name__}")
    scores = {id(s) for layer in supermask_layers(model) for s in layer.scores}
    for p in model.parameters():
        p.requires_grad_(id(p) in scores)
    return model


def _replace_layers(module: nn.Module, num_tasks: int, sparsity: float) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            new = SupermaskLinear(child.in_features, child.out_features, num_tasks, sparsity)
        elif isinstance(child, nn.Conv2d):
            if child.padding_mode != "zeros" or isinstance(child.padding, str):
                raise ValueError(f"supermask_: {name} must use numeric zero padding, got {child.padding!r}, "
                                 f"{child.padding_mode!r}")
            new = SupermaskConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                  child.padding, child.dilation, child.groups, num_tasks, sparsity)
        else:
            _replace_layers(child, num_tasks, sparsity)
            continue
        setattr(module, name, new.to(child.weight.device, child.weight.dtype))
