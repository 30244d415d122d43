"""Discovering Symbolic Models from Deep Learning with Inductive Biases (Cranmer et al. 2020, arXiv:2006.11287).

The n-body simulators (`simulate`: spring, 1/r and 1/r^2 forces; dataset "nbody"), the graph network with its
standard, bottleneck and L1 variants (`gn`: presets `gn_standard`, `gn_bottleneck`, `gn_l1`), the analysis of its
messages (`messages`: linear fits on the true forces, symbolic regression with gplearn) and the claims. See
README.md beside this file.
"""

from . import claims, gn, simulate  # noqa: F401  (registers the dataset, presets and claims)
from .gn import GraphNetwork, acceleration_loss, edge_index, gn_bottleneck, gn_l1, gn_standard, l1_term
from .simulate import accelerations, energy, load_nbody, pair_force, pair_potential
from .simulate import simulate as simulate_nbody

__all__ = ["GraphNetwork", "acceleration_loss", "edge_index", "gn_standard", "gn_bottleneck", "gn_l1", "l1_term",
           "accelerations", "energy", "load_nbody", "pair_force", "pair_potential", "simulate_nbody"]
