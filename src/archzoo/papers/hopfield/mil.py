r"""Multiple-instance learning with rare witnesses (Ramsauer et al. 2020, arXiv:2008.02217, Sec. 4, immune
repertoire classification): bags of many instances, labelled positive when at least one instance is a witness.

`make_witness_bags` draws the task: every instance is a feature vector x ~ N(0, I_D); a positive bag has
`witnesses` of its `bag_size` instances shifted along a hidden unit direction u, x + `signal` u (DeepRC's
simulated repertoires implant a motif into a small fraction of the sequences in the same way). A negative bag
has none. Knowing u, the Bayes-optimal decision is the likelihood ratio of the bag,

    LR = C(N, w)^{-1} sum_{|S| = w} prod_{i in S} exp(signal s_i - signal^2 / 2),   s_i = u^T x_i

(for one witness, the mean of exp(signal s_i - signal^2 / 2) over the bag), which `oracle_accuracy` computes as
the ceiling of every learner. The witness rate w / N is what makes the task hard for mean pooling: a bag's mean
moves by signal w / N along u, less than its own noise (1 / sqrt(N)) when N is large.

`MILClassifier` encodes each instance with a small MLP (or an embedding of instance ids), pools the bag with
`HopfieldPooling` (or, as baselines, mean or max pooling) and classifies the pooled vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ...core.checks import as_model_dtype, check_shape
from ...core.classifier import Classifier
from ...core.embeddings import TokenEmbedding
from ...data import register_dataset
from .layers import HopfieldPooling

POOLINGS = ("hopfield", "mean", "max")


def make_witness_bags(n: int, bag_size: int = 100, dim: int = 16, witnesses: int = 1, signal: float = 4.0,
                      seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """n bags, half positive: x (n, bag_size, dim) float32, y (n,) int64, the witness flags (n, bag_size) bool and
    the hidden direction u (dim,). The seed fixes u and the draws; witnesses sit at random places in the bag."""
    if not 1 <= witnesses <= bag_size:
        raise ValueError(f"witnesses must be in 1..bag_size={bag_size}, got {witnesses}")
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(dim, generator=g)
    u = u / u.norm()                                                   # the hidden witness direction
    x = torch.randn(n, bag_size, dim, generator=g)
    y = torch.arange(n) % 2
    y = y[torch.randperm(n, generator=g)]
    rank = torch.rand(n, bag_size, generator=g).argsort(1).argsort(1)   # a random permutation per bag
    witness = (rank < witnesses) & y.bool()[:, None]                   # (n, bag_size): w places in positive bags
    x = x + signal * witness[..., None].float() * u                    # x + signal u at the witnesses
    return x, y, witness, u


def oracle_accuracy(x: Tensor, y: Tensor, u: Tensor, signal: float, witnesses: int = 1) -> float:
    """Accuracy (percent) of the Bayes-optimal rule LR > 1 that knows u (equal priors; exact for one witness, the
    single-witness ratio otherwise, a lower bound on the optimum)."""
    s = x @ u                                                          # (n, N) projections on u
    log_lr = torch.logsumexp(signal * s - signal ** 2 / 2, dim=1) - math.log(x.shape[1])
    return 100.0 * float(((log_lr > 0).long() == y).float().mean())


def load_witness_bags(n_train: int = 2000, n_test: int = 1000, bag_size: int = 100, dim: int = 16,
                      witnesses: int = 1, signal: float = 4.0, seed: int = 0):
    """The registered data set "witness_bags": train and test bags with the same hidden direction."""
    x, y, _, u = make_witness_bags(n_train + n_test, bag_size, dim, witnesses, signal, seed)
    return WitnessBags("witness_bags", TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:]),
                       num_classes=2, in_features=dim, direction=u, signal=signal, witnesses=witnesses)


@dataclass
class WitnessBags:
    """Bags of instance vectors: `train`/`test` TensorDatasets of (x (n, N, D) float32, y (n,) int64), and the
    hidden witness direction u with the signal and witness count that drew them."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int
    in_features: int
    direction: Tensor
    signal: float
    witnesses: int

    def oracle_accuracy(self) -> float:
        """The Bayes-optimal test accuracy (percent), see `oracle_accuracy`."""
        x, y = self.test.tensors
        return oracle_accuracy(x, y, self.direction, self.signal, self.witnesses)


register_dataset("witness_bags", load_witness_bags, kind="bags",
                 description="multiple-instance bags, positive iff 1-few of ~100 Gaussian instances are shifted "
                             "witnesses (hopfield)")


class MILClassifier(Classifier, nn.Module):
    """Bags (B, N, in_features) of instance vectors, or (B, N) instance ids with `vocab_size`, -> logits (B, classes).

    Instance encoder (Linear-ReLU-Linear-ReLU to `dim`, or an embedding of ids), then the bag pooling: `hopfield`
    (`HopfieldPooling` with `num_queries` learned state patterns, Sec. 3, Eq. 12) or the baselines `mean` and
    `max` over instances, then a linear head. Every pooling is permutation invariant, so a bag is a set. `max_len`
    (optional) is the largest bag accepted: a larger one is a ValueError naming both sizes.
    `forward_features` returns the encoded instances (B, N, dim); `forward_head` pools and classifies.
    """

    def __init__(self, num_classes: int = 2, *, in_features: int | None = None, vocab_size: int | None = None,
                 dim: int = 64, pooling: str = "hopfield", heads: int = 4, dim_head: int = 16, num_queries: int = 1,
                 beta: float | None = None, max_len: int | None = None):
        super().__init__()
        if (in_features is None) == (vocab_size is None):
            raise ValueError(f"give exactly one of in_features and vocab_size, got {in_features} and {vocab_size}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.in_features, self.vocab_size, self.pooling_kind, self.max_len = in_features, vocab_size, pooling, max_len
        self.encoder = (TokenEmbedding(vocab_size, dim) if vocab_size is not None else
                        nn.Sequential(nn.Linear(in_features, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU()))
        self.pool = HopfieldPooling(dim, heads, dim_head, num_queries, beta) if pooling == "hopfield" else None
        self.num_classes, self.num_features = num_classes, dim * (num_queries if pooling == "hopfield" else 1)
        self.head = self.new_head(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:                  # (B, N, in_features) or (B, N) -> (B, N, dim)
        if self.vocab_size is None:
            check_shape(x, "B N D", D=self.in_features)
            x = as_model_dtype(x, self)
        else:
            check_shape(x, "B N", name="ids")
        if x.shape[1] == 0:
            raise ValueError(f"input: a bag needs at least one instance, got shape {tuple(x.shape)}")
        if self.max_len is not None and x.shape[1] > self.max_len:
            raise ValueError(f"input: a bag of {x.shape[1]} instances is longer than max_len={self.max_len}")
        return self.encoder(x)

    def forward_head(self, h: Tensor, pre_logits: bool = False) -> Tensor:   # (B, N, dim)
        if self.pool is not None:
            h = self.pool(h).flatten(1)                                # (B, num_queries * dim)
        else:
            h = h.mean(1) if self.pooling_kind == "mean" else h.amax(1)   # (B, dim)
        return h if pre_logits else self.head(h)
