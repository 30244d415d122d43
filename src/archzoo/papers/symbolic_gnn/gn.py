r"""The graph network of Cranmer et al. 2020 (arXiv:2006.11287, Sec. 3 and Fig. 2; the authors' `models.py`).

On a fully connected graph of particles, an edge model phi^e turns each ordered pair (receiver i, sender j) into a
message, the messages into each receiver are summed, and a node model phi^v turns a particle and its summed
message into its acceleration:

    m_ij = phi^e(x_i, x_j),      \bar{m}_i = \sum_{j \ne i} m_ij,      \hat{a}_i = phi^v(x_i, \bar{m}_i)

The sum makes the update invariant to the order of the senders and the whole network equivariant to relabelling
the particles. phi^e and phi^v are MLPs with 3 hidden layers of 300 ReLU units (the authors' code). The paper's
variants differ in the messages (Sec. 3, "Inductive biases"):

- standard: 100-dimensional messages, no constraint;
- bottleneck: messages of dimension D, the dimension of the forces (`msg_dim=dim`);
- L1: 100-dimensional messages with an L1 penalty `message_l1` x mean_edges sum_k |m_ij,k| added to the loss
  (weight 1e-2, the authors'), which the model hands to the Trainer as its `aux_loss`.

The loss is the mean absolute error of the accelerations (the authors' `loss`, square=False).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import as_model_dtype, check_shape
from ...registry import register_model

GN_CFG = dict(num_classes=0, task="coordinate-regression")   # a set of particles (B, n, 2D + 2) -> (B, n, D)
STANDARD_MSG_DIM, L1_WEIGHT = 100, 1e-2


def mlp(in_features: int, hidden: int, hidden_layers: int, out_features: int) -> nn.Sequential:
    """`hidden_layers` Linear + ReLU layers of width `hidden`, then a Linear layer (the authors' `Seq`)."""
    widths = [in_features] + [hidden] * hidden_layers
    layers = [m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(widths[-1], out_features))


def edge_index(n: int, device=None) -> tuple[Tensor, Tensor]:
    """(receivers, senders) of the n (n - 1) edges of the complete directed graph, grouped by receiver."""
    off = ~torch.eye(n, dtype=torch.bool, device=device)
    receivers, senders = off.nonzero(as_tuple=True)
    return receivers, senders


class GraphNetwork(nn.Module):
    """Particles (B, n, 2D + 2) -> accelerations (B, n, D) through messages of `msg_dim` (module docstring)."""

    def __init__(self, dim: int = 2, msg_dim: int = STANDARD_MSG_DIM, hidden: int = 300, hidden_layers: int = 3,
                 message_l1: float = 0.0):
        super().__init__()
        if min(dim, msg_dim, hidden, hidden_layers) < 1 or message_l1 < 0:
            raise ValueError(f"need dim, msg_dim, hidden, hidden_layers >= 1 and message_l1 >= 0, got {dim}, "
                             f"{msg_dim}, {hidden}, {hidden_layers}, {message_l1}")
        self.dim, self.msg_dim, self.message_l1 = dim, msg_dim, message_l1
        self.node_features = 2 * dim + 2                                 # position, velocity, charge, mass
        self.out_features = dim
        self.edge_model = mlp(2 * self.node_features, hidden, hidden_layers, msg_dim)            # phi^e
        self.node_model = mlp(self.node_features + msg_dim, hidden, hidden_layers, dim)         # phi^v
        self.aux_loss = None

    @property
    def default_input_size(self) -> tuple[int]:
        """One particle's state: (2D + 2,) (read into `pretrained_cfg["input_size"]`)."""
        return (self.node_features,)

    def checked(self, x: Tensor) -> Tensor:
        """States (B, n, 2D + 2) in the parameters' dtype, or a ValueError naming the expected shape."""
        check_shape(x, "B N F", F=self.node_features)
        return as_model_dtype(x, self)

    def messages(self, x: Tensor) -> Tensor:
        """m_ij = phi^e(x_i, x_j) for every edge of `edge_index(n)`: (B, n, F) -> (B, n (n - 1), msg_dim)."""
        x = self.checked(x)
        receivers, senders = edge_index(x.shape[1], x.device)
        return self.edge_model(torch.cat([x[:, receivers], x[:, senders]], dim=-1))

    def forward(self, x: Tensor) -> Tensor:                              # (B, n, F)
        x = self.checked(x)
        m = self.messages(x)                                             # (B, n (n - 1), msg_dim)
        summed = rearrange(m, "b (n k) m -> b n k m", n=x.shape[1]).sum(2)    # \bar{m}_i, (B, n, msg_dim)
        if self.training and self.message_l1 > 0:
            self.aux_loss = self.message_l1 * l1_term(m)
        return self.node_model(torch.cat([x, summed], dim=-1))           # (B, n, D)


def l1_term(m: Tensor) -> Tensor:
    """The L1 variant's penalty before its weight: the mean over edges of sum_k |m_ij,k|."""
    return m.abs().sum(-1).mean() if m.numel() else m.sum()


def acceleration_loss(model: GraphNetwork, batch, augment: float = 0.0) -> Tensor:
    """The mean absolute error of the predicted accelerations (the authors' L1 loss), for `engine.train.train`.

    `augment` > 0: every graph is first moved by a random translation N(0, augment^2) of its positions (the
    authors' augmentation, 3), which leaves the true accelerations unchanged."""
    x, a = batch
    if augment > 0:
        shift = augment * torch.randn(len(x), 1, model.dim, dtype=x.dtype, device=x.device)    # (B, 1, D)
        x = torch.cat([x[..., :model.dim] + shift, x[..., model.dim:]], dim=-1)
    return (model(x) - a).abs().mean()


@register_model(paper="symbolic_gnn", input_size=(6,), **GN_CFG)
def gn_standard(**kwargs) -> GraphNetwork:
    """The standard GN of the paper in 2-D: 100-dimensional messages, no constraint."""
    return GraphNetwork(**(dict(dim=2, msg_dim=STANDARD_MSG_DIM) | kwargs))


@register_model(paper="symbolic_gnn", input_size=(6,), **GN_CFG)
def gn_bottleneck(**kwargs) -> GraphNetwork:
    """The bottleneck GN in 2-D: messages of dimension D = 2, the dimension of the forces."""
    return GraphNetwork(**(dict(dim=2, msg_dim=2) | kwargs))


@register_model(paper="symbolic_gnn", input_size=(6,), **GN_CFG)
def gn_l1(**kwargs) -> GraphNetwork:
    """The L1 GN in 2-D: 100-dimensional messages with the L1 penalty 1e-2 (its `aux_loss`)."""
    return GraphNetwork(**(dict(dim=2, msg_dim=STANDARD_MSG_DIM, message_l1=L1_WEIGHT) | kwargs))
