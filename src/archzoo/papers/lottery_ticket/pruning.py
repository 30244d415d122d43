r"""Pruning masks and magnitude pruning (Frankle & Carbin 2018, arXiv:1803.03635, Sec. 1-2).

A subnetwork of f(x; \theta) is f(x; m \odot \theta) with a binary mask m over the weights. Here every prunable
weight (that of each `nn.Linear` and `nn.Conv2d`; biases are never pruned, as in the paper) carries its mask
through `torch.nn.utils.parametrize`: `layer.weight` is computed as `original * mask`, so a pruned weight is zero
in every forward pass and its gradient, d(original * mask)/d original = mask, is zero too. The mask is a buffer
of the parametrization and `original` the layer's own parameter, so both live in the model's state dict and go
into (and come back from) every checkpoint:

    layer.parametrizations.weight.original      the trained values (pruned entries kept at 0)
    layer.parametrizations.weight.0.mask        1 = kept, 0 = pruned

Magnitude pruning (Sec. 2, step 3): remove the p% of the remaining weights with the smallest magnitude, in each
layer with its own rate ("layer-wise", Sec. 2-3: 20% of the fully connected weights, 10% of the output layer's)
or over all layers pooled ("global", Sec. 4: VGG-19 and ResNet-18). The number removed is round(p * remaining),
the rule of `torch.nn.utils.prune`, whose masks ours equal.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

PRUNABLE = (nn.Linear, nn.Conv2d)
SCOPES = ("layer", "global")


class Mask(nn.Module):
    """The parametrization w = original * mask of one weight tensor; `mask` is a float buffer of 0s and 1s."""

    def __init__(self, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, original: Tensor) -> Tensor:
        return original * self.mask


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """`{name: layer}` for every `nn.Linear` and `nn.Conv2d` of `model`, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def layer_rates(model: nn.Module, *, fc: float, output: float | None = None, conv: float | None = None) -> dict:
    """Sec. 2-3's per-layer rates: `{name: rate}` with `fc` for linear layers, `conv` for convolutions and `output`
    for the classifier (`model.get_classifier()`; default: `fc`). Layers with no rate (conv=None) are not pruned."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    rates = {}
    for name, layer in prunable_layers(model).items():
        rate = (output if output is not None else fc) if layer is head else conv if isinstance(layer, nn.Conv2d) \
            else fc
        if rate is not None:
            rates[name] = rate
    return rates


def _check_rates(layers: dict, rates: dict) -> None:
    unknown = sorted(set(rates) - set(layers))
    if unknown:
        raise ValueError(f"pruning rates name layers the model does not have: {unknown}; prunable: {sorted(layers)}")
    bad = {name: r for name, r in rates.items() if not 0.0 <= r < 1.0}
    if bad:
        raise ValueError(f"pruning rates must be in [0, 1), got {bad}")


def is_masked(layer: nn.Module) -> bool:
    return parametrize.is_parametrized(layer, "weight")


def apply_masks(model: nn.Module, masks: dict[str, Tensor] | None = None, names=None) -> nn.Module:
    """Give the weights of the layers `names` (default: every prunable layer) a mask parametrization: `masks[name]`,
    or all ones. A layer that already has one gets the new mask (when given); its original weights are zeroed where
    the mask is 0, so that the stored weights are sparse too. Returns `model`."""
    layers = prunable_layers(model)
    names = list(names if names is not None else (masks if masks is not None else layers))
    unknown = sorted(set(names) - set(layers))
    if unknown:
        raise ValueError(f"no prunable layer named {unknown}; prunable: {sorted(layers)}")
    for name in names:
        layer = layers[name]
        weight = layer.parametrizations.weight.original if is_masked(layer) else layer.weight
        mask = masks[name].to(weight) if masks is not None else torch.ones_like(weight)
        if mask.shape != weight.shape:
            raise ValueError(f"mask of {name}: expected shape {tuple(weight.shape)}, got {tuple(mask.shape)}")
        if is_masked(layer):
            layer.parametrizations.weight[0].mask.copy_(mask)
        else:
            parametrize.register_parametrization(layer, "weight", Mask(mask))
        with torch.no_grad():
            weight.mul_(mask)
    return model


def masks_of(model: nn.Module) -> dict[str, Tensor]:
    """`{name: mask}` (the buffers themselves, not copies) of every masked layer."""
    return {name: layer.parametrizations.weight[0].mask for name, layer in prunable_layers(model).items()
            if is_masked(layer)}


def originals_of(model: nn.Module) -> dict[str, Tensor]:
    """`{name: original weight parameter}` of every masked layer."""
    return {name: layer.parametrizations.weight.original for name, layer in prunable_layers(model).items()
            if is_masked(layer)}


def weights_left(model: nn.Module) -> float:
    """P_m (Sec. 1): the fraction of the masked layers' weights still unpruned (1.0 for a dense net)."""
    masks = list(masks_of(model).values())
    return float(sum(m.sum() for m in masks) / sum(m.numel() for m in masks)) if masks else 1.0


@torch.no_grad()
def magnitude_masks(model: nn.Module, rates: dict[str, float] | float, scope: str = "layer") -> dict[str, Tensor]:
    """New masks that remove, of the weights each mask keeps, the fraction `rates` with the smallest |w| (Sec. 2,
    step 3). `scope="layer"`: each layer removes round(rate * its remaining weights), `rates` a `{name: rate}` dict
    (see `layer_rates`) or one rate for every masked layer. `scope="global"`: one rate; the round(rate * remaining)
    smallest weights of all masked layers pooled are removed, so a layer of small weights loses more than one of
    large weights. Masks only shrink: a pruned weight never comes back."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    masks, weights = masks_of(model), originals_of(model)
    if not masks:
        raise ValueError("the model has no masks: call apply_masks(model) first")
    if scope == "global" and not isinstance(rates, (int, float)):
        raise ValueError(f"global pruning takes one rate for all layers, got {rates!r}")
    rates = dict.fromkeys(masks, float(rates)) if isinstance(rates, (int, float)) else dict(rates)
    _check_rates(masks, rates)
    # |w| of the weights still kept; +inf for pruned ones, so that they are never picked again
    scores = {name: weights[name].abs().masked_fill(masks[name] == 0, float("inf")) for name in rates}
    new = {name: m.clone() for name, m in masks.items()}
    if scope == "layer":
        for name, score in scores.items():
            _prune_smallest(new[name].view(-1), score.view(-1), round(rates[name] * int(masks[name].sum())))
    else:
        flat = torch.cat([s.flatten() for s in scores.values()])
        kept = torch.cat([new[name].flatten() for name in scores])
        remaining = int(sum(masks[name].sum() for name in scores))
        _prune_smallest(kept, flat, round(rates[next(iter(rates))] * remaining))
        for name, chunk in zip(scores, kept.split([s.numel() for s in scores.values()])):
            new[name] = chunk.view_as(new[name])
    return new


def _prune_smallest(mask: Tensor, score: Tensor, k: int) -> None:
    """Set to 0, in place, the entries of the flat `mask` at the `k` smallest `score`s."""
    if k > 0:
        mask[torch.topk(score, k, largest=False).indices] = 0
