"""Hopfield Networks is All You Need (Ramsauer et al. 2020, arXiv:2008.02217).

The continuous modern Hopfield network (`energy`: the energy of Eq. 2, the update rule of Eq. 3, and the classical
binary network as the control), the layers `Hopfield` (registered as the attention "hopfield"), `HopfieldPooling`
and `HopfieldLayer` (Sec. 3), the multiple-instance task with rare witnesses and its classifier (`mil`), the presets
`hopfield_small` and `hopfield_mil`, the claims and the benchmark entry. See README.md beside this file.
"""

from . import bench, claims, layers, mil, models  # noqa: F401  (registers the attention, presets, data, bench, claims)
from .energy import classical_retrieve, energy, hebbian_weights, lse, update
from .layers import Hopfield, HopfieldLayer, HopfieldPooling
from .mil import MILClassifier, make_witness_bags, oracle_accuracy
from .models import hopfield_mil, hopfield_small

__all__ = ["energy", "lse", "update", "hebbian_weights", "classical_retrieve", "Hopfield", "HopfieldPooling",
           "HopfieldLayer", "MILClassifier", "make_witness_bags", "oracle_accuracy", "hopfield_small", "hopfield_mil"]
