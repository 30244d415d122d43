"""LambdaNetworks: Modeling Long-Range Interactions Without Attention (Bello 2021, arXiv:2102.08602).

The lambda layer (content and position lambdas, multi-query heads, intra-depth, global form and lambda
convolution), LambdaResNets, and the memory and accuracy claims. See README.md beside this file.
"""

from . import claims, lambda_layer, models  # noqa: F401  (registers presets, layers and claims)
from .lambda_layer import LambdaLayer
from .models import (
    LambdaCifarResNet,
    LambdaResNet,
    lambda_resnet8,
    lambda_resnet50,
    lambda_resnet50_c4c5,
    lambda_resnet50_u4,
)

__all__ = ["LambdaCifarResNet", "LambdaLayer", "LambdaResNet", "lambda_resnet8", "lambda_resnet50",
           "lambda_resnet50_c4c5", "lambda_resnet50_u4"]
