r"""Reversible residual layers and chunked feed-forward (Kitaev et al. 2020, arXiv:2001.04451, Sec. 3).

A residual network stores every layer's input for the backward pass: memory grows with depth. The
reversible residual of RevNets (Gomez et al. 2017) splits the activations into two halves (x1, x2) and

    y1 = x1 + F(x2),      y2 = x2 + G(y1)                 F = attention, G = feed-forward  (Sec. 3)

which can be undone exactly from the outputs alone,

    x2 = y2 - G(y1),      x1 = y1 - F(x2)

so the backward pass recomputes each layer's input from its output instead of storing it: training memory for
activations no longer grows with the number of layers (`ReversibleFunction`). The feed-forward is position-wise,
so it (and its reverse and backward computations) can run on c chunks of the sequence at a time, trading
nothing but parallelism for a c-times smaller peak of the wide hidden layer (Sec. 3, "Chunking").

Random draws inside F and G (LSH rotations, dropout masks) must be the same when a layer is recomputed; each
block records the random generator's state before F and before G and restores it in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer


class RNGState:
    """The CPU (and, for a CUDA tensor, the device's) random generator state at one moment, to replay draws."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextmanager
    def replay(self):
        """Run the body with the recorded state, leaving the caller's generators as they were."""
        with torch.random.fork_rng(devices=[self.device] if self.cuda is not None else []):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def chunked(fn: Callable[[Tensor], Tensor], x: Tensor, chunks: int) -> Tensor:
    """A position-wise `fn` applied to `chunks` pieces of the sequence (dim 1) one after the other (Sec. 3):

        Y_2 = [Y_2^(1); ...; Y_2^(c)] = [X_2^(1) + G(Y_1^(1)); ...; X_2^(c) + G(Y_1^(c))]
    """
    if chunks == 1:
        return fn(x)
    return torch.cat([fn(piece) for piece in x.chunk(chunks, dim=1)], dim=1)


@register_layer("ReversibleBlock", paper="reformer")
class ReversibleBlock(nn.Module):
    r"""One reversible layer: y1 = x1 + F(x2), y2 = x2 + G(y1) (Sec. 3), with G run on `chunks` sequence chunks.

    `f(x, **kwargs)` is the attention sub-layer (it may see the whole sequence), `g(x)` the position-wise
    feed-forward sub-layer; both keep the shape (B, N, d) of each half.
    `forward` is the ordinary layer (autograd stores its activations); `ReversibleFunction` runs the same
    computation with `forward_recorded` and rebuilds the inputs in `backward_pass`.
    """

    def __init__(self, f: nn.Module, g: nn.Module, chunks: int = 1):
        super().__init__()
        if chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {chunks}")
        self.f, self.g, self.chunks = f, g, chunks

    def forward(self, x1: Tensor, x2: Tensor, **f_kwargs) -> tuple[Tensor, Tensor]:
        y1 = x1 + self.f(x2, **f_kwargs)
        y2 = x2 + chunked(self.g, y1, self.chunks)
        return y1, y2

    def forward_recorded(self, x1: Tensor, x2: Tensor, **f_kwargs) -> tuple[Tensor, Tensor, RNGState, RNGState]:
        """`forward`, also returning the generator states before F and before G, to replay them backwards."""
        f_state = RNGState(x1.device)
        y1 = x1 + self.f(x2, **f_kwargs)
        g_state = RNGState(x1.device)
        y2 = x2 + chunked(self.g, y1, self.chunks)
        return y1, y2, f_state, g_state

    def backward_pass(self, y1: Tensor, y2: Tensor, dy1: Tensor, dy2: Tensor, f_state: RNGState,
                      g_state: RNGState, grads: dict, **f_kwargs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """From the outputs and their gradients, the inputs (x1, x2) and their gradients (dx1, dx2).

        Parameter gradients are added into `grads` ({parameter: gradient}). G is recomputed, inverted and
        differentiated one chunk at a time, so only one chunk of its hidden layer is alive at once.
        """
        g_params = [p for p in self.g.parameters() if p.requires_grad]
        x2_pieces, dy1_pieces = [], []
        with g_state.replay():
            for y1_c, y2_c, dy2_c in zip(y1.chunk(self.chunks, 1), y2.chunk(self.chunks, 1),
                                         dy2.chunk(self.chunks, 1)):
                with torch.enable_grad():
                    y1_c = y1_c.detach().requires_grad_(True)
                    g_out = self.g(y1_c)
                d_y1_c, *d_params = torch.autograd.grad(g_out, [y1_c, *g_params], dy2_c, allow_unused=True)
                _accumulate(grads, g_params, d_params)
                x2_pieces.append(y2_c - g_out.detach())                 # x2 = y2 - G(y1)
                dy1_pieces.append(d_y1_c)
        x2 = torch.cat(x2_pieces, dim=1)
        dy1 = dy1 + torch.cat(dy1_pieces, dim=1)                          # dL/dy1 through y1 and through G(y1)

        f_params = [p for p in self.f.parameters() if p.requires_grad]
        with f_state.replay(), torch.enable_grad():
            x2_leaf = x2.detach().requires_grad_(True)
            f_out = self.f(x2_leaf, **f_kwargs)
        d_x2, *d_params = torch.autograd.grad(f_out, [x2_leaf, *f_params], dy1, allow_unused=True)
        _accumulate(grads, f_params, d_params)
        x1 = y1 - f_out.detach()                                          # x1 = y1 - F(x2)
        return x1, x2, dy1, dy2 + d_x2                                    # dx1 = dy1, dx2 = dy2 + dF^T dy1


def _accumulate(grads: dict, params: Sequence[Tensor], values: Sequence[Tensor | None]) -> None:
    for p, g in zip(params, values):
        if g is not None:
            grads[p] = g if p not in grads else grads[p] + g


class ReversibleFunction(torch.autograd.Function):
    """The forward pass of a stack of `ReversibleBlock`s that keeps only the last output; its backward pass
    rebuilds every layer's input from its output (Sec. 3) and returns the gradients of the input and of `params`.

    `ReversibleFunction.apply(x, blocks, f_kwargs, *params)`: x (B, N, 2d) is [x1; x2], `params` every trainable
    parameter of the blocks (inputs of the function, so autograd gets their gradients from it).
    """

    @staticmethod
    def forward(ctx, x: Tensor, blocks: Sequence[ReversibleBlock], f_kwargs: dict, *params: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        states = []
        for block in blocks:                                              # grad mode is off inside forward
            x1, x2, f_state, g_state = block.forward_recorded(x1, x2, **f_kwargs)
            states.append((f_state, g_state))
        y = torch.cat([x1, x2], dim=-1)                                   # (B, N, 2d): the only activation kept
        ctx.blocks, ctx.f_kwargs, ctx.states, ctx.params = blocks, f_kwargs, states, params
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: Tensor):
        (y,) = ctx.saved_tensors
        y1, y2 = y.chunk(2, dim=-1)
        dy1, dy2 = dy.chunk(2, dim=-1)
        grads: dict = {}
        for block, (f_state, g_state) in zip(reversed(ctx.blocks), reversed(ctx.states)):
            y1, y2, dy1, dy2 = block.backward_pass(y1, y2, dy1, dy2, f_state, g_state, grads, **ctx.f_kwargs)
        return (torch.cat([dy1, dy2], dim=-1), None, None, *(grads.get(p) for p in ctx.params))


@register_layer("ReversibleSequence", paper="reformer")
class ReversibleSequence(nn.Module):
    """A stack of `ReversibleBlock`s on x = [x1; x2] (B, N, 2d).

    With `reversible=True` (default) training runs through `ReversibleFunction`: activation memory independent of
    depth, at the price of recomputing each layer once more in the backward pass. `reversible=False` runs the
    very same function with ordinary autograd (the standard network, which stores every layer's activations).
    """

    def __init__(self, blocks: Sequence[ReversibleBlock], reversible: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.reversible = reversible

    def forward(self, x: Tensor, **f_kwargs) -> Tensor:
        check_shape(x, "B N D")
        if x.shape[-1] % 2:
            raise ValueError(f"input: a reversible stack takes [x1; x2] with an even last dimension, "
                             f"got {tuple(x.shape)}")
        params = [p for p in self.parameters() if p.requires_grad]
        if self.reversible and torch.is_grad_enabled() and (x.requires_grad or params):
            return ReversibleFunction.apply(x, list(self.blocks), f_kwargs, *params)
        x1, x2 = x.chunk(2, dim=-1)
        for block in self.blocks:
            x1, x2 = block(x1, x2, **f_kwargs)
        return torch.cat([x1, x2], dim=-1)
