"""EvoNorm: Evolving Normalization-Activation Layers (Liu, Brock, Simonyan, Le 2020, arXiv:2004.02967).

The layers `EvoNormB0` and `EvoNormS0`, the search space of layers as computation graphs over Table 1's primitives
(`LayerGraph`, `GraphLayer`, `random_graph`, `mutate`), the evolutionary search with its rejections
(`regularized_evolution`, and `random_search` as its control), CIFAR ResNets whose BN-ReLUs are one such layer
(`norm_act_resnet`, presets resnet20_evonorm_b0/s0) and three claims. See README.md beside this file.
"""

from . import bench, claims  # noqa: F401  (registers the claims and the bench pairs)
from .evolution import (
    Candidate,
    ProxyTask,
    SearchResult,
    evaluate_candidate,
    lightweight_rejection,
    random_search,
    regularized_evolution,
    worst_case_grad_norm,
)
from .evonorm import EvoNormB0, EvoNormS0, batch_variance, group_std, instance_std
from .models import bn_relu, norm_act_resnet, resnet20_evonorm_b0, resnet20_evonorm_s0, s0_groups
from .search_space import EVONORM_B0, EVONORM_S0, PRIMITIVES, GraphLayer, LayerGraph, Node, graph, mutate, random_graph

__all__ = ["EvoNormB0", "EvoNormS0", "batch_variance", "instance_std", "group_std", "LayerGraph", "Node", "graph",
           "GraphLayer", "PRIMITIVES", "EVONORM_B0", "EVONORM_S0", "random_graph", "mutate", "Candidate", "ProxyTask",
           "SearchResult", "evaluate_candidate", "lightweight_rejection", "worst_case_grad_norm",
           "regularized_evolution", "random_search", "norm_act_resnet", "bn_relu", "s0_groups", "resnet20_evonorm_b0",
           "resnet20_evonorm_s0"]
