r"""The Mixer layer (Tolstikhin et al. 2021, arXiv:2105.01601, Sec. 2, Eq. 1).

A Mixer layer takes the table X in R^{S x C} of S patches ("tokens") by C channels and mixes it twice with plain
MLPs: first along the patches, on the transposed table (token mixing, the same MLP for every channel), then along
the channels (channel mixing, the same MLP for every patch). Each MLP has a LayerNorm before it and a skip
connection around it:

    U_{*,i} = X_{*,i} + W_2 \sigma(W_1 LayerNorm(X)_{*,i}),     i = 1 ... C     (token mixing)
    Y_{j,*} = U_{j,*} + W_4 \sigma(W_3 LayerNorm(U)_{j,*}),     j = 1 ... S     (channel mixing)    (Eq. 1)

W_1 in R^{D_S x S}, W_2 in R^{S x D_S} are shared across channels, W_3 in R^{D_C x C}, W_4 in R^{C x D_C} across
patches; \sigma is GELU. Patches exchange information only through the token-mixing MLP.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from ...core.checks import check_shape
from ...core.mlp import MLP
from ...registry import register_layer


@register_layer(paper="mlp_mixer")
class MixerLayer(nn.Module):
    r"""One Mixer layer (Sec. 2, Eq. 1, Fig. 1): token-mixing MLP on X^T, then channel-mixing MLP, both pre-norm.

    `num_patches` is S, `dim` the hidden size C, `token_mlp_dim` D_S and `channel_mlp_dim` D_C (Table 1).
    `token_mixing` (W_1, W_2) and `channel_mixing` (W_3, W_4) are `core.MLP`s with GELU; LayerNorm eps is 1e-6 as
    in the released models. Input and output: (B, S, C).
    """

    def __init__(self, num_patches: int, dim: int, token_mlp_dim: int, channel_mlp_dim: int, dropout: float = 0.0,
                 layer_norm_eps: float = 1e-6):
        super().__init__()
        self.num_patches, self.dim = num_patches, dim
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.token_mixing = MLP(num_patches, token_mlp_dim, act="gelu", dropout=dropout)     # W_1, W_2: S -> D_S -> S
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.channel_mixing = MLP(dim, channel_mlp_dim, act="gelu", dropout=dropout)         # W_3, W_4: C -> D_C -> C

    def forward(self, x: Tensor) -> Tensor:                                                   # (B, S, C)
        check_shape(x, "B S C", S=self.num_patches, C=self.dim)
        columns = rearrange(self.norm1(x), "b s c -> b c s")                                # LayerNorm(X)^T
        u = x + rearrange(self.token_mixing(columns), "b c s -> b s c")                      # U, Eq. 1 first line
        return u + self.channel_mixing(self.norm2(u))                                       # Y, Eq. 1 second line
