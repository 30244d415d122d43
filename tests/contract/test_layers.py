"""The contract of the written-out layers (issue 13): a registered layer with a `reference_forward` (the paper's
equations written out) computes the same function in `forward` (its fast path: fused kernels, one autograd
function), in float64, in training and in eval mode: the same outputs, the same gradients for the input and every
parameter, the same running statistics after each step.

`CASES` builds each such layer with non-trivial parameters and gives its input shape; a registered layer with a
`reference_forward` that is missing from it fails the coverage test, so a new fast path cannot go unchecked.
"""

from __future__ import annotations

import copy

import pytest
import torch

from archzoo import registry
from archzoo.papers.batch_norm import BatchNorm1d, BatchNorm2d
from archzoo.papers.bit import StdConv2d
from archzoo.papers.evonorm import EvoNormB0, EvoNormS0
from archzoo.papers.group_norm import GroupNorm
from archzoo.papers.weight_standardization import BatchChannelNorm

CASES = {                                       # registered name -> (build, input shape)
    "BatchNorm1d": (lambda: BatchNorm1d(5), (6, 5, 7)),
    "BatchNorm2d": (lambda: BatchNorm2d(5), (4, 5, 3, 6)),
    "BatchNorm2d momentum=None": (lambda: BatchNorm2d(5, momentum=None), (4, 5, 3, 6)),
    "GroupNorm": (lambda: GroupNorm(3, 6), (4, 6, 5, 5)),
    "GroupNorm (B, C)": (lambda: GroupNorm(2, 6), (5, 6)),
    "BatchChannelNorm": (lambda: BatchChannelNorm(6, num_groups=3, momentum=0.3), (3, 6, 4, 5)),
    "EvoNormB0": (lambda: EvoNormB0(6), (5, 6, 4, 3)),
    "EvoNormS0": (lambda: EvoNormS0(8, groups=4), (3, 8, 5, 4)),
    "StdConv2d": (lambda: StdConv2d(4, 6, 3, stride=2, padding=1, bias=True), (2, 4, 7, 7)),
}


def registered_layers_with_a_reference() -> set[str]:
    registry.list_papers()                                           # imports the papers (their registrations)
    return {name for name, layer in registry._LAYERS.items() if hasattr(layer, "reference_forward")}


def test_every_layer_with_a_written_out_reference_is_checked():
    assert registered_layers_with_a_reference() <= {name.split(" ")[0] for name in CASES}


def randomized(layer: torch.nn.Module, seed: int) -> torch.nn.Module:
    """float64, parameters drawn from U(0.5, 1.5), away from their 1 / 0 initialisation, so that every one matters."""
    g = torch.Generator().manual_seed(seed)
    state = {name: torch.rand(p.shape, generator=g, dtype=torch.float64) + 0.5 for name, p in layer.named_parameters()}
    layer = layer.double()
    layer.load_state_dict(state, strict=False)                       # buffers keep their initial values
    return layer


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_is_the_written_out_function(case, mode):
    build, shape = CASES[case]
    fast = randomized(build(), seed=0)
    written = copy.deepcopy(fast)
    g = torch.Generator().manual_seed(1)
    for step in range(3):                                            # eval: after two training steps
        fast.train(mode == "train" or step < 2), written.train(mode == "train" or step < 2)
        x = 2.0 * torch.randn(shape, generator=g, dtype=torch.float64) + 0.5
        x_fast, x_written = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_fast, y_written = fast(x_fast), written.reference_forward(x_written)
        torch.testing.assert_close(y_fast, y_written, msg=f"{case}: output at step {step}")
        upstream = torch.randn(y_fast.shape, generator=g, dtype=torch.float64)     # a generic downstream loss
        fast.zero_grad(), written.zero_grad()
        (y_fast * upstream).sum().backward()
        (y_written * upstream).sum().backward()
        torch.testing.assert_close(x_fast.grad, x_written.grad, msg=f"{case}: input gradient at step {step}")
        for (name, p), q in zip(fast.named_parameters(), written.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=f"{case}: gradient of {name} at step {step}")
        for (name, b), c in zip(fast.named_buffers(), written.buffers()):
            torch.testing.assert_close(b, c, msg=f"{case}: buffer {name} after step {step}")
