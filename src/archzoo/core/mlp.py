"""MLPs and the table of feed-forward layers that `Transformer(feedforward=...)` draws from.

A registered feed-forward is a factory `(dim, mlp_ratio, dropout) -> nn.Module` mapping `(B, N, dim)` to
`(B, N, dim)`; a paper adds its own (a gated unit, a mixture of experts) with `@register_feedforward(name)`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ..registry import table, unknown

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """Linear -> activation -> dropout -> Linear -> dropout, on the last dimension (timm's `Mlp`).

    `hidden_dim` and `out_dim` default to `dim`; `act` is a name in `ACTIVATIONS` or an `nn.Module` class.
    """

    def __init__(self, dim: int, hidden_dim: int | None = None, out_dim: int | None = None,
                 act: str | Callable[[], nn.Module] = "gelu", dropout: float = 0.0):
        super().__init__()
        if isinstance(act, str):
            if act not in ACTIVATIONS:
                raise unknown("activation", act, ACTIVATIONS)
            act = ACTIVATIONS[act]
        hidden_dim, out_dim = hidden_dim or dim, out_dim or dim
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = act()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:                    # (..., dim) -> (..., out_dim)
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class FeedForward(MLP):
    """The position-wise feed-forward network of Vaswani et al. (2017, arXiv:1706.03762, Sec. 3.3).

        FFN(x) = act(x W_1 + b_1) W_2 + b_2,   inner width = mlp_ratio * dim  (2048 = 4 * 512 in the paper)

    The paper uses ReLU; GELU is the default of BERT, GPT and ViT. The last dropout is the residual dropout
    of Sec. 5.4.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, act: str | Callable[[], nn.Module] = "gelu",
                 dropout: float = 0.0):
        super().__init__(dim, int(dim * mlp_ratio), dim, act, dropout)


_FEEDFORWARDS = table("feed-forward")          # name -> factory (dim, mlp_ratio, dropout) -> nn.Module


def register_feedforward(name: str):
    """Decorate a factory or class `(dim, mlp_ratio, dropout) -> nn.Module` for `Transformer(feedforward=name)`."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        return _FEEDFORWARDS.add(name, factory)

    return deco


@register_feedforward("mlp")
def _gelu_feedforward(dim: int, mlp_ratio: float, dropout: float) -> nn.Module:
    return FeedForward(dim, mlp_ratio, "gelu", dropout)


@register_feedforward("relu")
def _relu_feedforward(dim: int, mlp_ratio: float, dropout: float) -> nn.Module:
    return FeedForward(dim, mlp_ratio, "relu", dropout)


def build_feedforward(feedforward: str | nn.Module | Callable[[int], nn.Module], dim: int,
                      mlp_ratio: float = 4.0, dropout: float = 0.0) -> nn.Module:
    """Build a feed-forward layer from a registered name, a module (returned as is), or a factory/class `(dim)`.

    `mlp_ratio` and `dropout` reach registered factories only; bind them yourself in a factory
    (`lambda d: MyFFN(d, ratio=2)`).
    """
    if isinstance(feedforward, str):
        if feedforward not in _FEEDFORWARDS:
            raise unknown("feed-forward", feedforward, _FEEDFORWARDS)
        return _FEEDFORWARDS[feedforward](dim, mlp_ratio, dropout)
    if isinstance(feedforward, nn.Module):
        return feedforward
    if callable(feedforward):
        return feedforward(dim)
    raise ValueError(f"feedforward must be a registered name, an nn.Module or a factory (dim) -> nn.Module, "
                     f"got {type(feedforward).__name__}")
