"""Counting multiply-adds the way Table 2 does, with `torch.utils.flop_counter.FlopCounterMode`.

FlopCounterMode counts 2 FLOPs per multiply-add of convolutions and matrix products; the paper (like ResNet's
Table 1) reports multiply-adds, half that. The involution's own multiply-add (Eq. 4) is elementwise, which
FlopCounterMode does not see, so it is added here: K*K per output element, C H' W' K^2 per image.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .involution import Involution


def count_macs(model: nn.Module, input_size: tuple[int, int, int], device: str | torch.device = "cpu") -> int:
    """Multiply-adds of one forward pass of `model` on one image of `input_size` (C, H, W)."""
    counter, aggregation = FlopCounterMode(display=False), []

    def count_aggregation(module: Involution, inputs, output) -> None:
        aggregation.append(output.numel() * module.kernel_size**2)       # Eq. 4: K*K multiply-adds per output

    hooks = [m.register_forward_hook(count_aggregation) for m in model.modules() if isinstance(m, Involution)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return counter.get_total_flops() // 2 + sum(aggregation)
