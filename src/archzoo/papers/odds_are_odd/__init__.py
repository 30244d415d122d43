"""The Odds are Odd (Roth, Kilcher & Hofmann 2019, arXiv:1902.04818): adversarial examples are detected, and
their true class recovered, from how random noise changes the classifier's pairwise log-odds. PGD attacks
(Madry et al. 2018), the noise-induced log-odds statistic, its calibrated z-scores, the detection test and the
corrected prediction, the authors' small CIFAR-10 net `odds_cnn4` and the claims. See README.md beside this
file."""

from . import claims, detector, models  # noqa: F401  (registers the preset, the detector and the claims)
from .detector import OddsAreOdd
from .log_odds import expected_log_odds_change, noise_statistic, pairwise_log_odds
from .models import CNN4, odds_cnn4
from .pgd import pgd

__all__ = ["CNN4", "OddsAreOdd", "expected_log_odds_change", "noise_statistic", "odds_cnn4", "pairwise_log_odds",
           "pgd"]
