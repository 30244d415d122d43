"""LambdaResNets (Bello 2021, arXiv:2102.08602, Sec. 5.1-5.2, Table 3, App. D).

A LambdaResNet is a ResNet whose bottleneck blocks have their 3x3 convolution replaced by a lambda layer
(lambda convolution, |k| = 16, |h| = 4, r = 23 at 224x224); where the block downsamples, a 3x3 average pooling
with stride 2 follows the lambda layer (App. D). Everything else is `archzoo.core.resnet.ResNet` (option B
shortcuts, BN after the lambda layer as after the convolution).

Presets:
- `lambda_resnet50`: every 3x3 convolution of ResNet-50 replaced, |u| = 1 (Table 3, "lambda layer": 15.0M
  parameters, 78.4% top-1). Ours: 14,995,592 parameters with 1000 classes.
- `lambda_resnet50_u4`: the same with intra-depth |u| = 4 (Table 3: 16.0M, 78.9%). Ours: 16,531,880 parameters
  (the paper does not list the r used with |u| = 4; with r = 23 we are 0.5M above its count).
- `lambda_resnet50_c4c5`: the hybrid of Table 4 style, lambda layers in the c4 and c5 stages only, convolutions in
  c2 and c3 (the paper's recommendation for speed, Sec. 5.2).
- `lambda_resnet8`: a small CIFAR-style net (`CifarResNet` depth 8, width 16) whose second 3x3 convolution in the
  basic blocks of the last two stages is a lambda layer (r = 7); used by the accuracy claim on Fashion-MNIST.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ...core.resnet import Bottleneck, CifarResNet, ResNet
from ...registry import CIFAR10_CFG, IMAGENET_CFG, register_model
from .lambda_layer import LambdaLayer


def lambda_conv_replacement(channels: int, stride: int, **lambda_kw) -> nn.Module:
    """A lambda layer in place of a 3x3 convolution; stride 2 becomes a 3x3 average pooling after it (App. D)."""
    layer = LambdaLayer(channels, channels, **lambda_kw)
    return nn.Sequential(layer, nn.AvgPool2d(3, stride=2, padding=1)) if stride > 1 else layer


class LambdaResNet(ResNet):
    """ResNet-50-style net with lambda layers in place of the bottleneck 3x3 convolutions of `lambda_stages`
    (0 = c2, ..., 3 = c5). `dim_k`, `heads`, `dim_u`, `r` are the lambda layers' hyperparameters (Sec. 4).

    `zero_init_residual=True` starts the last BN of every block at gamma = 0, so every block starts as its
    shortcut, as Google's TPU ResNet code does (tensorflow/tpu, `models/official/resnet/resnet_model.py`:
    `batch_norm_relu(..., init_zero=True)` after the last convolution of a block; Goyal et al. 2017); the paper
    specifies the lambda layer's own initialisation only (App. C). Without it a fresh LambdaResNet in eval mode
    (BN still the identity) overflows: a lambda layer's output q^T (lambda^c + lambda^p) is quadratic in its
    input, so the activations square block after block until they are inf.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), lambda_stages: Sequence[int] = (0, 1, 2, 3), *,
                 dim_k: int = 16, heads: int = 4, dim_u: int = 1, r: int = 23, zero_init_residual: bool = True,
                 **kwargs):
        super().__init__(Bottleneck, layers, zero_init_residual=zero_init_residual, **kwargs)
        self.lambda_stages = tuple(lambda_stages)
        for i in self.lambda_stages:
            for block in self.stages[i]:
                stride = block.conv2.stride[0]
                block.conv2 = lambda_conv_replacement(block.conv2.in_channels, stride, dim_k=dim_k, heads=heads,
                                                      dim_u=dim_u, r=r)


@register_model(paper="lambda_networks", **IMAGENET_CFG)
def lambda_resnet50(**kwargs) -> LambdaResNet:
    """LambdaResNet-50 (Table 3, "lambda layer"): all 3x3 convolutions replaced, |k|=16, |h|=4, |u|=1, r=23;
    paper 15.0M parameters, ours 14,995,592 with 1000 classes."""
    return LambdaResNet(**kwargs)


@register_model(paper="lambda_networks", **IMAGENET_CFG)
def lambda_resnet50_u4(**kwargs) -> LambdaResNet:
    """LambdaResNet-50 with intra-depth |u|=4 (Table 3): paper 16.0M parameters, ours 16,531,880 (r=23)."""
    return LambdaResNet(dim_u=4, **kwargs)


@register_model(paper="lambda_networks", **IMAGENET_CFG)
def lambda_resnet50_c4c5(**kwargs) -> LambdaResNet:
    """Hybrid LambdaResNet-50: lambda layers in c4 and c5, convolutions in c2 and c3 (Sec. 5.2); ours
    15,559,736 parameters with 1000 classes."""
    return LambdaResNet(lambda_stages=(2, 3), **kwargs)


class LambdaCifarResNet(CifarResNet):
    """`CifarResNet` (6n+2 layers) whose second 3x3 convolution of every basic block in `lambda_stages` is a lambda
    convolution (stride 1, width kept). By default the last two stages, the hybrid the paper recommends (Sec. 5.2:
    convolutions at high resolution, lambda layers later). A small LambdaResNet for 28x28 / 32x32 images."""

    def __init__(self, depth: int = 8, num_classes: int = 10, in_chans: int = 3, width: int = 16, *,
                 lambda_stages: Sequence[int] = (1, 2), dim_k: int = 16, heads: int = 4, dim_u: int = 1, r: int = 7,
                 **kwargs):
        super().__init__(depth, num_classes, in_chans, width, **kwargs)
        self.lambda_stages = tuple(lambda_stages)
        for i in self.lambda_stages:
            for block in self.stages[i]:
                c = block.conv2.in_channels
                block.conv2 = LambdaLayer(c, c, dim_k=dim_k, heads=heads, dim_u=dim_u, r=r)


@register_model(paper="lambda_networks", **CIFAR10_CFG)
def lambda_resnet8(**kwargs) -> LambdaCifarResNet:
    """Small LambdaResNet: CifarResNet-8 (width 16), lambda convolutions (|k|=16, |h|=4, r=7) in stages 2 and 3."""
    return LambdaCifarResNet(8, **kwargs)
