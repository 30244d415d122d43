r"""Manifold Mixup (Verma et al. 2018, arXiv:1806.05236, Sec. 2, Alg. 1) for any classifier, through forward hooks.

The network is split at a layer k into g_k (input -> hidden state h_k) and f_k (h_k -> logits). At each training
step (Alg. 1): draw lambda ~ Beta(alpha, alpha) and k uniformly from the eligible layers S, pair every example of
the batch with a random other one (a permutation of the batch), and train on the mixed hidden state and the mixed
target (Eq. 1-2):

    Mix_lambda(a, b) = lambda a + (1 - lambda) b                                                        (Eq. 1)
    L = l( f_k(Mix_lambda(g_k(x), g_k(x'))), Mix_lambda(y, y') )                                      (Eq. 2)

With cross-entropy and one-hot targets, l(p, Mix(y, y')) = lambda CE(p, y) + (1 - lambda) CE(p, y'). Layer 0 is
the input itself: S = {0} is input mixup (Zhang et al. 2018, arXiv:1710.09412), the paper's baseline.

Hidden states are mixed by a forward hook on the named module, which replaces its output by Eq. 1 and is removed
after the forward, so `ManifoldMixup` works for any registered classifier given the names of its eligible modules
(`default_mixup_layers` finds the stages of a ResNet or the blocks of a ViT or a Mixer).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import register_layer

INPUT = "input"                         # layer 0: mixing the input is input mixup
BLOCK_CONTAINERS = ("stages", "blocks", "encoder.blocks", "layers")     # ResNets; MLPs; ViTs; Mixers


def mix(h: Tensor, perm: Tensor, lam: float) -> Tensor:
    """Eq. 1 over a batch: every example mixed with the one `perm` pairs it with, lam h + (1 - lam) h[perm]."""
    if perm.shape != (h.shape[0],):
        raise ValueError(f"perm must have shape ({h.shape[0]},) for a batch of {h.shape[0]}, got {tuple(perm.shape)}")
    return lam * h + (1.0 - lam) * h[perm]


def mixup_cross_entropy(logits: Tensor, y: Tensor, perm: Tensor, lam: float) -> Tensor:
    """Eq. 2 with cross-entropy: the loss against the mixed one-hot target, lam CE(y) + (1 - lam) CE(y[perm])."""
    return lam * F.cross_entropy(logits, y) + (1.0 - lam) * F.cross_entropy(logits, y[perm])


def default_mixup_layers(model: nn.Module) -> list[str]:
    """The eligible layers S of Alg. 1 for a model made of a sequence of blocks: the input and the output of every
    block but the last of its first container among `stages` (ResNets), `blocks` (MLPs), `encoder.blocks` (ViTs)
    and `layers` (Mixers). For ResNet-20 that is the input and the first two of its three stages, the paper's
    k in {0, 1, 2} (Sec. 5.1, mixing at the input or after the first or second residual stage)."""
    for name in BLOCK_CONTAINERS:
        try:
            container = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container) >= 2:
            return [INPUT, *(f"{name}.{i}" for i in range(len(container) - 1))]
    raise ValueError(f"{type(model).__name__} has none of the block containers {', '.join(BLOCK_CONTAINERS)} "
                     "(a Sequential or ModuleList of >= 2 blocks): name its eligible layers, e.g. "
                     "ManifoldMixup(layers=['input', 'features.2'])")


def check_layers(model: nn.Module, layers: Sequence[str]) -> None:
    """Every name is `input` or a submodule of `model`; ValueError naming the unknown ones otherwise."""
    if not layers:
        raise ValueError("the eligible layers must not be empty (['input'] is input mixup)")
    names = {name for name, _ in model.named_modules() if name}
    unknown = [layer for layer in layers if layer != INPUT and layer not in names]
    if unknown:
        raise ValueError(f"unknown layers {unknown}: expected 'input' or submodule names of {type(model).__name__} "
                         f"such as {sorted(names)[:6]}")


@contextmanager
def mixing_at(model: nn.Module, layer: str, lam: float, perm: Tensor):
    """While the context is open, the output of `model`'s submodule `layer` is mixed (Eq. 1) by a forward hook;
    the hook is removed on exit, even after an error. The module must run exactly once per forward: a module
    that does not run (not on the forward path) or runs twice (shared weights) is a ValueError."""
    module = model.get_submodule(layer)
    calls = 0

    def hook(module: nn.Module, args, output):
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ValueError(f"layer {layer!r} ran more than once in one forward: mix at a module that runs once")
        if not isinstance(output, Tensor):
            raise TypeError(f"layer {layer!r} returns {type(output).__name__}, expected a Tensor to mix")
        return mix(output, perm, lam)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
    if calls == 0:
        raise ValueError(f"layer {layer!r} did not run in the forward: it is not on the model's path")


def mixed_forward(model: nn.Module, x: Tensor, layer: str, lam: float, perm: Tensor, net: nn.Module | None = None
                  ) -> Tensor:
    """f_k(Mix_lambda(g_k(x), g_k(x[perm]))), the logits of Eq. 2, mixing at `layer` (`input`: input mixup).
    `net` is the module to call when it wraps `model` (DDP); hooks are placed on `model`'s submodules."""
    net = model if net is None else net
    if layer == INPUT:
        return net(mix(x, perm, lam))
    with mixing_at(model, layer, lam, perm):
        return net(x)


@dataclass
class MixupDraw:
    """The random choices of one step of Alg. 1: the mixing coefficient, the layer k and the pairing."""

    lam: float
    layer: str
    perm: Tensor


@register_layer(paper="manifold_mixup")
class ManifoldMixup:
    r"""A Trainer step (Alg. 1): mix at a random eligible layer, train on Eq. 2.

        Trainer(model, opt, data=ds, batch_size=128, steps=..., step=ManifoldMixup(alpha=2.0)).fit()

    - `layers`: the eligible set S, names of submodules whose output may be mixed, `input` for layer 0;
      None: `default_mixup_layers(model)`. `layers=["input"]` is input mixup.
    - `alpha`: lambda ~ Beta(alpha, alpha) (alpha = 0: lambda = 1, plain ERM on unmixed batches).
    - `model`, `stream`, `optimizer`: names in the trainer (default: its only one).

    The draws of step t are a pure function of (trainer seed, t), like the batches of the engine's streams: a
    resumed run makes the same draws as an uninterrupted one, and no other use of the global RNG moves them.
    """

    def __init__(self, layers: Sequence[str] | None = None, alpha: float = 2.0, *, model: str | None = None,
                 stream: str | None = None, optimizer: str | None = None):
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.layers = list(layers) if layers is not None else None
        self.alpha, self.model, self.stream, self.optimizer = alpha, model, stream, optimizer

    def eligible(self, model: nn.Module) -> list[str]:
        layers = default_mixup_layers(model) if self.layers is None else self.layers
        check_layers(model, layers)
        return layers

    def draw(self, seed: int, step: int, batch: int, layers: Sequence[str]) -> MixupDraw:
        """lambda ~ Beta(alpha, alpha), k ~ U(S), a random permutation of the batch, for step `step`."""
        rng = np.random.default_rng([seed, step])
        lam = float(rng.beta(self.alpha, self.alpha)) if self.alpha > 0 else 1.0
        layer = layers[int(rng.integers(len(layers)))]
        return MixupDraw(lam, layer, torch.from_numpy(rng.permutation(batch)))

    def __call__(self, trainer, batches: dict) -> dict:
        name = trainer.only("models", self.model)
        model, net = trainer.models[name], trainer.nets[name]
        layers = self.eligible(model)
        x, y = batches[trainer.only("streams", self.stream)]
        d = self.draw(trainer.seed, trainer.step, len(x), layers)
        perm = d.perm.to(x.device)
        loss = mixup_cross_entropy(mixed_forward(model, x, d.layer, d.lam, perm, net=net), y, perm, d.lam)
        return {"loss": trainer.backward(loss, self.optimizer), "lam": d.lam, "layer": layers.index(d.layer)}


def input_mixup(alpha: float = 1.0, **kw) -> ManifoldMixup:
    """Input mixup (Zhang et al. 2018): Manifold Mixup whose only eligible layer is the input (k = 0)."""
    return ManifoldMixup([INPUT], alpha, **kw)
