r"""EvoNorm-B0 and EvoNorm-S0 as single autograd functions: the fast path of the layers in `evonorm.py`.

Autograd through the written-out formulas records a dozen elementwise ops and PyTorch's variance kernel, which
is slow on a CPU, and the layers ran 5-11x slower than the BN + ReLU and GN + SiLU pairs they replace. Here each
layer is one `torch.autograd.Function`: the forward computes the same function in a few in-place passes (S0 takes
its group statistics from GroupNorm's kernel, `torch.native_group_norm`; B0 its instance statistics as two-pass
moments, the mean and then the mean of squared deviations), and the backward is the gradient derived below, by
hand, with as few full-size temporaries as it takes (on a CPU these layers are bound by memory traffic). The tests
check both against the written-out layers (outputs, every gradient, running statistics; float64; training and
eval) and with gradcheck. A second derivative (`create_graph=True`, as `worst_case_grad_norm` takes)
differentiates the written-out formula (`formula`, passed in by the layer), recomputed from the saved inputs.

Notation: x is (B, C, H, W), g = dL/dy, sums run over the axes that the left-hand side does not keep.

EvoNorm-S0, y = n r \gamma + \beta with n = x \sigma(v_1 x) and r = (s^2_{w,h,c/g} + \epsilon)^{-1/2} per sample
and group of m values with mean \mu_{bg}:

    dn/dx = \sigma + v_1 x \sigma (1 - \sigma),   dn/dv_1 = x^2 \sigma (1 - \sigma),   dL/d\gamma = \sum g n r
    dL/dr_{bg} = \sum g n \gamma,   dr_{bg}/dx = -r^3 (x - \mu_{bg}) / m
    dL/dx = g r \gamma dn/dx + dL/dr dr/dx

EvoNorm-B0, y = x \gamma / d + \beta with d = max(a, u), a = \sqrt{s^2_{b,w,h} + \epsilon} per channel (mean \mu_c
over N = BHW values), u = v_1 x + s, s = \sqrt{s^2_{w,h} + \epsilon} per sample and channel (mean \mu_{bc} over HW
values). With e = g x / d^2 and M = [u > a] (where the instance branch wins the max):

    dL/du = -\gamma e M,   dL/da_c = -\gamma \sum e (1 - M),   dL/dv_1 = \sum x dL/du,   dL/ds_{bc} = \sum dL/du
    dL/d\gamma = \sum g x / d
    dL/dx = g \gamma / d + v_1 dL/du + dL/ds (x - \mu_{bc}) / (s HW) + dL/da (x - \mu_c) / (a N)

the last term only in training (at inference a comes from the running average, a constant). The batch variance is
assembled from the instance moments (law of total variance, equal group sizes):
s^2_{b,w,h} = mean_b s^2_{w,h} + mean_b (\mu_{bc} - \mu_c)^2.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def channel(p: Tensor) -> Tensor:
    """A per-channel vector (C,) as (1, C, 1, 1), to broadcast against (B, C, H, W)."""
    return p.view(1, -1, 1, 1)


def centered_moments(x: Tensor, dims) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and biased variance over `dims` (kept), in two passes: the mean, then the mean of squared deviations.
    Also returns the squared deviations, a scratch tensor of x's size that the caller may overwrite."""
    mean = x.mean(dims, keepdim=True)
    scratch = (x - mean).square_()
    return mean, scratch.mean(dims, keepdim=True), scratch


def differentiate_reference(ctx, formula, inputs: tuple, grad: Tensor) -> tuple:
    """The input gradients of `formula(*inputs)` against `grad`, recorded as a graph (a second derivative)."""
    need = ctx.needs_input_grad[:len(inputs)]
    grads = iter(torch.autograd.grad(formula(*inputs), [t for t, n in zip(inputs, need) if n], grad,
                                     create_graph=True, allow_unused=True))
    return tuple(next(grads) if n else None for n in need)


def per_group(t: Tensor, channels: int) -> Tensor:
    """A per-(sample, group) statistic (B, G, 1) repeated for each channel of its group: (B, C, 1, 1)."""
    b, groups = t.shape[:2]
    return t.expand(b, groups, channels // groups).reshape(b, channels, 1, 1)


class EvoNormS0Function(torch.autograd.Function):
    """y = x sigmoid(v_1 x) / sqrt(s^2_{w,h,c/g}(x) + eps) * gamma + beta, forward and hand-derived backward."""

    @staticmethod
    def forward(ctx, x: Tensor, v1: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float,
                formula: Callable) -> Tensor:
        b, c = x.shape[:2]
        # GroupNorm's kernel gives mu_{bg} and r = (s^2_{w,h,c/g} + eps)^{-1/2}, (B, G); its output is our buffer
        out, mean, rstd = torch.native_group_norm(x, None, None, b, c, x.shape[2] * x.shape[3], groups, eps)
        mean, rstd = mean.unsqueeze(-1), rstd.unsqueeze(-1)                       # (B, G, 1)
        sig = (x * channel(v1)).sigmoid_()                                        # sigma(v_1 x)
        ctx.save_for_backward(x, v1, weight, bias, sig, mean, rstd)
        ctx.groups, ctx.eps, ctx.formula = groups, eps, formula
        torch.mul(x, sig, out=out)                                                # n = x sigma(v_1 x)
        return out.mul_(per_group(rstd, c) * channel(weight)).add_(channel(bias))  # n r gamma + beta

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, v1, weight, bias, sig, mean, rstd = ctx.saved_tensors
        if torch.is_grad_enabled():                                               # create_graph=True
            return differentiate_reference(ctx, lambda *t: ctx.formula(*t, ctx.groups, ctx.eps),
                                           (x, v1, weight, bias), grad) + (None,) * 3
        b, c = x.shape[:2]
        r = per_group(rstd, c)                                                    # (B, C, 1, 1)
        scale = r * channel(weight)                                               # r gamma, (B, C, 1, 1)
        w = (grad * x).mul_(sig)                                                  # g n
        gn = w.sum((2, 3))                                                        # sum_{h,w} g n, (B, C)
        d_weight = (gn * r.view(b, c)).sum(0)
        d_rstd = (gn * weight).view(b, ctx.groups, -1).sum(-1, keepdim=True)      # dL/dr, (B, G, 1)
        w.addcmul_(w, sig, value=-1.0)                                            # g x sigma (1 - sigma)
        m = c // ctx.groups * x.shape[2] * x.shape[3]                             # values in a group
        k = per_group(-d_rstd * rstd.pow(3) / m, c)                               # dL/dr dr/dx = k (x - mu_{bg})
        d_x = (grad * sig).addcmul_(w, channel(v1)).mul_(scale).addcmul_(x, k).sub_(k * per_group(mean, c))
        d_v1 = (w.mul_(x).sum((2, 3)) * scale.view(b, c)).sum(0)                  # sum g r gamma x^2 sigma (1 - sigma)
        return d_x, d_v1, d_weight, grad.sum((0, 2, 3)), None, None, None


class EvoNormB0Function(torch.autograd.Function):
    """y = x / max(sqrt(s^2_{b,w,h} + eps), v_1 x + sqrt(s^2_{w,h} + eps)) * gamma + beta, forward and backward.

    In training s^2_{b,w,h} is this batch's, and `running_var` moves towards it by `momentum` (in place, as
    `F.batch_norm` updates its running statistics); in eval it is `running_var`, a constant.
    """

    @staticmethod
    def forward(ctx, x: Tensor, v1: Tensor, weight: Tensor, bias: Tensor, running_var: Tensor, training: bool,
                momentum: float, eps: float, formula: Callable) -> Tensor:
        mean, var, out = centered_moments(x, (2, 3))                              # mu_{bc}, s^2_{w,h}, (B, C, 1, 1)
        if training:                                                              # law of total variance, (C,)
            batch_var = (var.mean(0) + (mean - mean.mean(0)).square_().mean(0)).view(-1)
            running_var.lerp_(batch_var.to(running_var.dtype), momentum)
        else:
            batch_var = running_var.clone()                                       # later updates leave it alone
        a = channel(batch_var + eps).sqrt_()                                      # (1, C, 1, 1)
        s = (var + eps).sqrt_()                                                   # (B, C, 1, 1)
        inv = torch.addcmul(s, x, channel(v1)).clamp_min_(a)                      # d = max(a, v_1 x + s)
        wins = torch.sub(inv, a).sign_()                                          # M = [u > a], as 0. or 1.
        inv.reciprocal_()                                                         # 1 / d
        ctx.save_for_backward(x, v1, weight, bias, inv, wins, mean, s, a, None if training else batch_var)
        ctx.training, ctx.eps, ctx.formula = training, eps, formula
        return torch.mul(x, inv, out=out).mul_(channel(weight)).add_(channel(bias))

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, v1, weight, bias, inv, wins, mean, s, a, batch_var = ctx.saved_tensors
        if torch.is_grad_enabled():                                               # create_graph=True
            return differentiate_reference(ctx, lambda *t: ctx.formula(*t, batch_var, ctx.eps), (x, v1, weight, bias),
                                           grad) + (None,) * 5
        gamma = channel(weight)
        g_inv = grad * inv                                                        # g / d
        e = g_inv * x                                                             # g x / d
        d_weight = e.sum((0, 2, 3))
        e_sum = e.mul_(inv).sum((0, 2, 3), keepdim=True)                          # e = g x / d^2
        e_won = e.mul_(wins)                                                      # e M
        won = e_won.sum((2, 3), keepdim=True)                                     # (B, C, 1, 1)
        k = -gamma * won / (s * (x.shape[2] * x.shape[3]))                       # dL/ds ds/dx = k (x - mu_{bc})
        shift = k * mean
        if ctx.training:                                                          # a depends on x
            d_a = -gamma * (e_sum - won.sum(0, keepdim=True))                     # (1, C, 1, 1)
            k_a = d_a / (a * (x.numel() // x.shape[1]))                           # dL/da da/dx = k_a (x - mu_c)
            k, shift = k + k_a, shift + k_a * mean.mean(0, keepdim=True)
        d_x = g_inv.mul_(gamma).addcmul_(e_won, -gamma * channel(v1)).addcmul_(x, k).sub_(shift)
        d_v1 = -weight * e_won.mul_(x).sum((0, 2, 3))
        return d_x, d_v1, d_weight, grad.sum((0, 2, 3)), None, None, None, None, None
