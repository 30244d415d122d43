"""The claims of "Hopfield Networks is All You Need" (Ramsauer et al. 2020, arXiv:2008.02217), at laptop scale.

1. `one_step_retrieval` (Sec. 2, Theorems 3-4, the exponential storage capacity): random binary patterns in
   d = 64, stored far beyond the classical capacity of 0.14 d, are retrieved from masked or noisy queries by one
   update of Eq. 3, where the classical Hebbian network, updated to convergence, fails at the same N.
2. `mil_rare_witnesses` (Sec. 4, multiple-instance learning and immune repertoire classification): HopfieldPooling
   classifies bags whose label rests on one witness among up to 200 instances, near the Bayes-optimal accuracy,
   where mean pooling with the same instance encoder and the same training budget stays well below.

That the energy never increases under the update (Theorem 1) holds by construction for any correct implementation
(the update is the concave-convex procedure on E), so it is a test (tests/papers/test_hopfield.py, many random
draws), not a claim. So is "the update equals attention".
"""

from __future__ import annotations
