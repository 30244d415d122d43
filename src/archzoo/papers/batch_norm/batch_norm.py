r"""Batch Normalization written out (Ioffe & Szegedy 2015, arXiv:1502.03167, Sec. 3, Algorithms 1 and 2).

Each activation x^{(k)} (a channel) is normalised with the mean and variance of the mini-batch
B = {x_1 ... x_m} it comes from, then scaled and shifted by learned gamma^{(k)}, beta^{(k)} so that the layer
can still represent the identity (Sec. 3, Algorithm 1):

    \mu_B = 1/m \sum_i x_i                                  (mini-batch mean)
    \sigma_B^2 = 1/m \sum_i (x_i - \mu_B)^2                 (mini-batch variance, biased)
    \hat{x}_i = (x_i - \mu_B) / \sqrt{\sigma_B^2 + \epsilon}      (normalise)
    y_i = \gamma \hat{x}_i + \beta                           (scale and shift)

For a convolutional layer the m values of a channel are all its positions in all the images of the batch,
m = B * H * W (Sec. 3.2), so that every location of a feature map is normalised the same way.

At inference the output must depend on the input alone, so the batch statistics are replaced by population
statistics gathered in training (Algorithm 2, step 10), E[x] = E_B[\mu_B] and Var[x] = m/(m-1) E_B[\sigma_B^2]
(the unbiased estimate), and BN becomes one fixed linear transform per channel (step 11):

    y = \gamma / \sqrt{Var[x] + \epsilon} * x + (\beta - \gamma E[x] / \sqrt{Var[x] + \epsilon})

`momentum=None` keeps exactly those averages over all training batches so far; a float keeps the moving
averages the paper uses to track the model while it trains (Sec. 3.1), as PyTorch does:
running = (1 - momentum) * running + momentum * batch statistic. The state dict (`weight`, `bias`,
`running_mean`, `running_var`, `num_batches_tracked`) is that of torch.nn.BatchNorm1d/2d, so weights load both ways.

`BatchNorm.reference_forward` is Algorithms 1 and 2 written out; `forward` computes the same function with
PyTorch's fused kernel (`F.batch_norm`, the same statistics, running averages and momentum), 2x faster on a CPU.
The tests check that the two agree (outputs, gradients, running statistics, in training and eval).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer


def per_channel(v: Tensor, x: Tensor) -> Tensor:
    """A per-channel vector (C,) shaped to broadcast against x (B, C, *spatial): (1, C, 1, ...)."""
    return v.view(1, -1, *[1] * (x.dim() - 2))


def batch_statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """Algorithm 1, lines 1-2: mini-batch mean mu_B and biased variance sigma_B^2 of each channel.

    The mini-batch of channel k is every value of that channel: over the batch and, for convolutional
    features, every position (Sec. 3.2). x: (B, C, *spatial) -> two (C,) tensors.
    """
    var, mean = torch.var_mean(x, (0, *range(2, x.dim())), correction=0)
    return mean, var


def normalize_scale_shift(x: Tensor, mean: Tensor, var: Tensor, gamma: Tensor | None, beta: Tensor | None,
                          eps: float) -> Tensor:
    r"""Algorithm 1, lines 3-4, and Algorithm 2, line 11: normalise each channel, then scale and shift it.

        \hat{x} = (x - mean) / sqrt(var + eps),   y = gamma \hat{x} + beta
                 = gamma / sqrt(var + eps) * x + (beta - gamma mean / sqrt(var + eps))

    computed in the second form, one affine map per channel (as Algorithm 2 writes inference, and as PyTorch's
    kernels compute both). In training `mean`, `var` are the batch's mu_B, sigma_B^2 and the gradient flows
    through them; at inference they are the population E[x], Var[x]. No gamma, beta: y = \hat{x}.
    """
    scale = torch.rsqrt(var + eps)                                       # 1 / sqrt(var + eps), (C,)
    if gamma is not None:
        scale = gamma * scale
    shift = -mean * scale if beta is None else beta - mean * scale       # (C,)
    return per_channel(scale, x) * x + per_channel(shift, x)


class BatchNorm(nn.Module):
    """Batch Normalization over the channel dimension of (B, C, *spatial) inputs (Algorithms 1 and 2).

    In training mode the output uses the statistics of the current mini-batch (Algorithm 1) and updates the
    population statistics `running_mean` and `running_var` (Algorithm 2, step 10); in eval mode it uses those
    (step 11), so each sample's output is independent of the rest of the batch. Subclasses fix the input rank.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None (cumulative average), got {momentum}")
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))          # gamma^{(k)}
            self.bias = nn.Parameter(torch.zeros(num_features))           # beta^{(k)}
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))  # E[x]
        self.register_buffer("running_var", torch.ones(num_features))    # Var[x]
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def check_input(self, x: Tensor) -> None:
        check_shape(x, "B C ...", C=self.num_features)

    def forward(self, x: Tensor) -> Tensor:                             # (B, C, *spatial)
        """The fast path: `reference_forward`'s function in PyTorch's fused kernel."""
        self.check_input(x)
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        self.check_batch(x)
        with torch.no_grad():
            self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True, factor, self.eps)

    def reference_forward(self, x: Tensor) -> Tensor:                   # (B, C, *spatial)
        """Algorithm 1 in training (with step 10 of Algorithm 2), Algorithm 2's inference transform in eval."""
        self.check_input(x)
        if not self.training:
            return normalize_scale_shift(x, self.running_mean, self.running_var, self.weight, self.bias, self.eps)
        m = self.check_batch(x)                                         # values per channel in the mini-batch
        mean, var = batch_statistics(x)                                 # mu_B, sigma_B^2, (C,)
        self.update_population_statistics(mean, var, m)
        return normalize_scale_shift(x, mean, var, self.weight, self.bias, self.eps)

    def check_batch(self, x: Tensor) -> int:
        """The number m of values per channel in a training mini-batch; ValueError below 2."""
        m = x.numel() // self.num_features
        if m < 2:
            raise ValueError(f"input: expected more than 1 value per channel when training (the variance of one "
                             f"value is 0), got shape {tuple(x.shape)}")
        return m

    @torch.no_grad()
    def update_population_statistics(self, mean: Tensor, var: Tensor, m: int) -> None:
        """Algorithm 2, step 10: average mu_B and the unbiased m/(m-1) sigma_B^2 over training mini-batches.

        `momentum=None`: the plain average over all batches so far (factor 1/n at the n-th batch);
        otherwise the moving average running = (1 - momentum) * running + momentum * batch.
        """
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1.0 - factor).add_(factor * mean)
        self.running_var.mul_(1.0 - factor).add_(factor * var * (m / (m - 1)))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


@torch.no_grad()
def estimate_population_statistics(model: nn.Module, batches: Iterable[Tensor]) -> nn.Module:
    """Algorithm 2, steps 9-11, for a network whose weights stay as they are: every BN layer of `model` forgets its
    running statistics and averages mu_B and the unbiased m/(m-1) sigma_B^2 over the training mini-batches
    `batches` instead (each layer sees the outputs of the training network N_BN^tr below it); `model` is returned
    in eval mode, the inference network N_BN^inf. Each layer's momentum is kept for later training."""
    layers = [m for m in model.modules() if isinstance(m, BatchNorm)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.momentum = None                                               # the plain average over all batches
        m.running_mean.zero_(), m.running_var.fill_(1.0), m.num_batches_tracked.zero_()
    model.train()
    for x in batches:
        model(x)
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    return model.eval()


@register_layer(paper="batch_norm")
class BatchNorm1d(BatchNorm):
    """BN of fully connected activations (B, C) or of sequences (B, C, L): the statistics of channel k are
    taken over the batch (and the length). Drop-in for torch.nn.BatchNorm1d."""

    def check_input(self, x: Tensor) -> None:
        check_shape(x, "B C ...", C=self.num_features)
        if x.dim() > 3:
            raise ValueError(f"input: expected shape (B, C={self.num_features}) or (B, C={self.num_features}, L), "
                             f"got {tuple(x.shape)}")


@register_layer(paper="batch_norm")
class BatchNorm2d(BatchNorm):
    """BN of convolutional feature maps (B, C, H, W): the statistics of channel k are taken over the batch and
    every location, m = B * H * W (Sec. 3.2). Drop-in for torch.nn.BatchNorm2d."""

    def check_input(self, x: Tensor) -> None:
        check_shape(x, "B C H W", C=self.num_features)
