r"""SIREN and its baselines as one coordinate network (Sitzmann et al. 2020, arXiv:2006.09661, Sec. 3, 4.1).

An implicit neural representation \Phi maps coordinates x (pixel positions, time) to the signal's values
\Phi(x) (Eq. 1). `CoordinateMLP` builds the paper's networks: a first layer, `hidden_layers` hidden layers of
width `hidden_features` and a linear output layer, with

- `activation="sine"`: SIREN (Sec. 3.2), sine layers with omega_0 and the principled initialisation;
- `activation="relu"`: the ReLU MLP baseline (He-normal weights, as in the authors' code);
- `activation="relu", num_frequencies=L`: ReLU with the positional encoding of Mildenhall et al. (NeRF), the
  baseline "ReLU P.E." of Fig. 1: each coordinate p becomes (p, sin(2^k pi p), cos(2^k pi p))_{k<L}.

The paper's image network has 5 layers of 256 units (Sec. 4.1; `Siren(2, 256, 3, 1)` in the authors' code).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...core.checks import as_model_dtype, check_shape
from ...registry import register_model
from ..perceiver.fourier import fourier_features
from .sine import FIRST_OMEGA_0, SineLayer, hidden_layer_bound

ACTIVATIONS = ("sine", "relu")
COORDINATE_CFG = dict(num_classes=0, task="coordinate-regression")      # coordinates (B, N, D) -> values (B, N, C)


def nyquist_frequencies(samples: int) -> int:
    """The number L of positional-encoding frequencies 2^0 .. 2^(L-1) below the Nyquist rate of `samples` points
    per unit of [-1, 1] (the authors' `get_num_frequencies_nyquist`): L = floor(log2(samples / 4))."""
    if samples < 8:
        raise ValueError(f"need at least 8 samples per axis for a positional encoding, got {samples}")
    return int(math.floor(math.log2(samples / 4)))


def positional_encoding(x: Tensor, num_frequencies: int) -> Tensor:
    """NeRF's gamma(p): (..., D) -> (..., D (2L + 1)), per coordinate sin(2^k pi p) and cos(2^k pi p) for
    k = 0 .. L-1, then p (the order of the features is immaterial to an MLP)."""
    return fourier_features(x, num_frequencies, max_freq=2.0 ** num_frequencies, spacing="log")


class CoordinateMLP(nn.Module):
    """Phi: x (..., in_features) -> (..., out_features), a first layer, `hidden_layers` hidden layers and a
    linear output layer (see the module's docstring for the activations and the encoding)."""

    def __init__(self, in_features: int = 2, hidden_features: int = 256, hidden_layers: int = 3,
                 out_features: int = 1, *, activation: str = "sine", first_omega_0: float = FIRST_OMEGA_0,
                 hidden_omega_0: float = FIRST_OMEGA_0, num_frequencies: int = 0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if min(in_features, hidden_features, out_features) < 1 or hidden_layers < 0 or num_frequencies < 0:
            raise ValueError(f"need in/hidden/out_features >= 1, hidden_layers >= 0, num_frequencies >= 0, got "
                             f"{in_features}, {hidden_features}, {out_features}, {hidden_layers}, {num_frequencies}")
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.num_frequencies = num_frequencies
        widths = [in_features * (2 * num_frequencies + 1)] + [hidden_features] * (hidden_layers + 1)
        if activation == "sine":
            self.net = nn.Sequential(*(SineLayer(a, b, first_omega_0 if i == 0 else hidden_omega_0, is_first=i == 0)
                                       for i, (a, b) in enumerate(zip(widths, widths[1:]))))
        else:
            self.net = nn.Sequential(*(nn.Sequential(he_normal(nn.Linear(a, b)), nn.ReLU())
                                       for a, b in zip(widths, widths[1:])))
        self.head = nn.Linear(hidden_features, out_features)              # the outermost layer is linear
        with torch.no_grad():
            if activation == "sine":                                      # the authors' code: as a hidden layer
                bound = hidden_layer_bound(hidden_features, hidden_omega_0)
                self.head.weight.uniform_(-bound, bound)
            else:
                he_normal(self.head)

    @property
    def default_input_size(self) -> tuple[int]:
        """One coordinate: (in_features,) (read into `pretrained_cfg["input_size"]`)."""
        return (self.in_features,)

    def encode(self, x: Tensor) -> Tensor:                                # (..., D) -> (..., D (2L + 1))
        return positional_encoding(x, self.num_frequencies) if self.num_frequencies else x

    def forward(self, x: Tensor) -> Tensor:                               # (..., in_features)
        check_shape(x, "... D", D=self.in_features)
        x = as_model_dtype(x, self)
        return self.head(self.net(self.encode(x)))                        # (..., out_features)


class Siren(CoordinateMLP):
    """SIREN (Sec. 3.2): sine layers with omega_0 (30 in the first layer) and the principled initialisation,
    then a linear layer. `Siren(2, 256, 3, 1)` is the paper's image network (5 layers of 256 units)."""

    def __init__(self, in_features: int = 2, hidden_features: int = 256, hidden_layers: int = 3,
                 out_features: int = 1, first_omega_0: float = FIRST_OMEGA_0, hidden_omega_0: float = FIRST_OMEGA_0):
        super().__init__(in_features, hidden_features, hidden_layers, out_features, activation="sine",
                         first_omega_0=first_omega_0, hidden_omega_0=hidden_omega_0)


def he_normal(linear: nn.Linear) -> nn.Linear:
    """He (Kaiming) normal weights for ReLU, fan-in mode, as the authors' code initialises its ReLU baselines."""
    nn.init.kaiming_normal_(linear.weight, nonlinearity="relu", mode="fan_in")
    return linear


def relu_mlp(in_features: int = 2, hidden_features: int = 256, hidden_layers: int = 3, out_features: int = 1,
             num_frequencies: int = 0) -> CoordinateMLP:
    """The ReLU baseline of Fig. 1, with NeRF's positional encoding when `num_frequencies` > 0 ("ReLU P.E.")."""
    return CoordinateMLP(in_features, hidden_features, hidden_layers, out_features, activation="relu",
                         num_frequencies=num_frequencies)


@register_model(paper="siren", input_size=(2,), **COORDINATE_CFG)
def siren_image(**kwargs) -> Siren:
    """The image network of Sec. 4.1 / Fig. 1: (x, y) -> grey value, 5 layers of 256 units, omega_0 = 30."""
    return Siren(**(dict(in_features=2, hidden_features=256, hidden_layers=3, out_features=1) | kwargs))


@register_model(paper="siren", input_size=(1,), **COORDINATE_CFG)
def siren_audio(**kwargs) -> Siren:
    """The audio network of Sec. 4.1 (Fig. 4): t -> amplitude, 5 layers of 256 units, first omega_0 = 3000 (the
    authors' code) so that the first layer spans the clip's high frequencies."""
    return Siren(**(dict(in_features=1, hidden_features=256, hidden_layers=3, out_features=1, first_omega_0=3000.0)
                    | kwargs))


@register_model(paper="siren", input_size=(2,), **COORDINATE_CFG)
def siren_small(**kwargs) -> Siren:
    """A small SIREN for tests and quick runs: 3 sine layers of 64 units (the first and 2 hidden), then linear."""
    return Siren(**(dict(in_features=2, hidden_features=64, hidden_layers=2, out_features=1) | kwargs))
