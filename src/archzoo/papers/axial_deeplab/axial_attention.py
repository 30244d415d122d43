r"""Position-sensitive axial-attention (Wang et al. 2020, arXiv:2003.07853, Sec. 3.1-3.2, Eq. 1-4).

Self-attention over all H W positions of a feature map costs O((hw)^2) (Eq. 1). Axial-attention factorises it into
two 1D attentions, one along the height axis (every column on its own) and one along the width axis (every row on
its own), so a pixel reaches every other one in two steps for O(hw(h + w)) (Sec. 3.2). Each 1D attention is
*position-sensitive* (Sec. 3.1): learned relative encodings r^q, r^k, r^v, indexed by the offset p - o between key p
and query o, enter the logits through the queries *and* the keys, and the output through the values (Eq. 3 in 2D,
Eq. 4 along one axis):

    y_o = \sum_{p \in N_{1 x m}(o)} softmax_p(q_o^T k_p + q_o^T r^q_{p-o} + k_p^T r^k_{p-o}) (v_p + r^v_{p-o})   (Eq. 4)

`position="q"` keeps only the query term, the relative attention of stand-alone self-attention (Ramachandran et al.
2019) that the paper writes as Eq. 2; `position="none"` is plain self-attention along the axis (Eq. 1).

As in the authors' code (csrhddlam/axial-deeplab), on which the paper's parameter counts are based, q, k, v come
from one 1x1 projection followed by batch normalisation, every logit term and every output term has its own batch
normalisation per head (`norm=True`), and logits are not scaled by 1/sqrt(d). Each head splits its d_v channels
into queries and keys of d_v / 2 channels and values of d_v channels. A stride > 1 average-pools the output.

`gated=True` adds the learnable gates of the later Medical Transformer (Valanarasu et al. 2021, arXiv:2102.10662,
Sec. 3.2), not part of Axial-DeepLab, which scale the position terms:

    y_o = \sum_p softmax_p(q_o^T k_p + G_Q q_o^T r^q_{p-o} + G_K k_p^T r^k_{p-o}) (G_{V1} v_p + G_{V2} r^v_{p-o})

with G_Q = G_K = G_{V2} = 0.1 and G_{V1} = 1 at initialisation (its code), so training starts close to content-only
attention and learns how much positional information to use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_layer

AXES = ("height", "width")
POSITIONS = ("none", "q", "qkv")


def relative_index(length: int, span: int, device: torch.device | None = None) -> Tensor:
    """(L, L) indices into a table of 2 m - 1 relative encodings: entry [o, p] is p - o + m - 1 (offset p - o)."""
    if length > span:
        raise ValueError(f"axis length {length} exceeds the span m={span} of the relative encodings")
    pos = torch.arange(length, device=device)
    return pos[None, :] - pos[:, None] + span - 1                        # [o, p] -> p - o + m - 1


@register_layer(paper="axial_deeplab")
class AxialAttention(nn.Module):
    r"""Position-sensitive self-attention along one axis of a (B, C, H, W) map (Eq. 4), global along the axis.

    `span` m: the relative encodings r^q, r^k (d_v / 2 channels) and r^v (d_v channels) are tables over the 2 m - 1
    offsets -(m - 1) ... m - 1, so the layer attends over whole axes of length up to m (the ImageNet models set m to
    the feature size: 56, 28, 14, 7). `axis="height"` attends within each column, `"width"` within each row.
    """

    def __init__(self, dim: int, dim_out: int | None = None, *, heads: int = 8, span: int = 56, axis: str = "height",
                 stride: int = 1, position: str = "qkv", norm: bool = True, gated: bool = False):
        super().__init__()
        dim_out = dim_out or dim
        if axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        if dim_out % heads or (dim_out // heads) % 2:
            raise ValueError(f"dim_out ({dim_out}) must be divisible by heads ({heads}) into an even width per head")
        if gated and position != "qkv":
            raise ValueError("the gates scale the q, k and v position terms: gated=True needs position='qkv'")
        self.dim, self.dim_out, self.heads, self.span, self.axis = dim, dim_out, heads, span, axis
        self.stride, self.position, self.norm, self.gated = stride, position, norm, gated
        self.dim_v = dim_out // heads                                      # d_v per head
        self.dim_qk = self.dim_v // 2                                      # d_q = d_k = d_v / 2
        self.to_qkv = nn.Conv1d(dim, 2 * dim_out, 1, bias=False)           # W_Q, W_K, W_V of all heads
        nn.init.normal_(self.to_qkv.weight, std=dim ** -0.5)
        n_logits, n_outputs = {"none": (1, 1), "q": (2, 1), "qkv": (3, 2)}[position]
        if norm:
            self.norm_qkv = nn.BatchNorm1d(2 * dim_out)
            self.norm_logits = nn.BatchNorm2d(n_logits * heads)           # one per (term, head)
            self.norm_out = nn.BatchNorm1d(n_outputs * dim_out)          # one per (term, channel)
        if position != "none":
            self.r_q = nn.Parameter(torch.randn(self.dim_qk, 2 * span - 1) * self.dim_v ** -0.5)   # r^q_{p-o}
        if position == "qkv":
            self.r_k = nn.Parameter(torch.randn(self.dim_qk, 2 * span - 1) * self.dim_v ** -0.5)   # r^k_{p-o}
            self.r_v = nn.Parameter(torch.randn(self.dim_v, 2 * span - 1) * self.dim_v ** -0.5)    # r^v_{p-o}
        if gated:
            self.gate_q, self.gate_k = nn.Parameter(torch.tensor(0.1)), nn.Parameter(torch.tensor(0.1))   # G_Q, G_K
            self.gate_v1, self.gate_v2 = nn.Parameter(torch.tensor(1.0)), nn.Parameter(torch.tensor(0.1))  # G_V1, G_V2

    def forward(self, x: Tensor) -> Tensor:                                # (B, C, H, W)
        dims = check_shape(x, "B C H W", name="input", C=self.dim)
        length = dims["H"] if self.axis == "height" else dims["W"]
        pattern = "b c h w -> (b w) c h" if self.axis == "height" else "b c h w -> (b h) c w"
        lines = rearrange(x, pattern)                                      # one 1D sequence per column/row: (B', C, L)
        qkv = self.to_qkv(lines)                                           # (B', 2 C_out, L)
        if self.norm:
            qkv = self.norm_qkv(qkv)
        qkv = rearrange(qkv, "n (g c) l -> n g c l", g=self.heads)
        q, k, v = qkv.split([self.dim_qk, self.dim_qk, self.dim_v], dim=2)  # (B', G, d, L) each

        logits = [torch.einsum("ngci,ngcj->ngij", q, k)]                   # q_o^T k_p, [o, p]
        if self.position != "none":
            idx = relative_index(length, self.span, x.device)             # [o, p] -> p - o + m - 1
            r_q = self.r_q[:, idx]                                         # r^q_{p-o}, (d, L, L)
            logits.append(torch.einsum("ngci,cij->ngij", q, r_q))         # q_o^T r^q_{p-o}
        if self.position == "qkv":
            r_k, r_v = self.r_k[:, idx], self.r_v[:, idx]
            logits.append(torch.einsum("ngcj,cij->ngij", k, r_k))         # k_p^T r^k_{p-o}
            if self.gated:
                logits[1], logits[2] = self.gate_q * logits[1], self.gate_k * logits[2]
        if self.norm:
            logits = self.norm_logits(torch.cat(logits, 1)).chunk(len(logits), 1)
        attn = torch.stack(list(logits)).sum(0).softmax(-1)               # softmax over p, (B', G, L, L)

        outputs = [torch.einsum("ngij,ngcj->ngci", attn, v)]               # sum_p a_op v_p
        if self.position == "qkv":
            outputs.append(torch.einsum("ngij,cij->ngci", attn, r_v))      # sum_p a_op r^v_{p-o}
            if self.gated:
                outputs = [self.gate_v1 * outputs[0], self.gate_v2 * outputs[1]]
        outputs = [rearrange(o, "n g c l -> n (g c) l") for o in outputs]
        if self.norm:
            outputs = self.norm_out(torch.cat(outputs, 1)).chunk(len(outputs), 1)
        y = torch.stack(list(outputs)).sum(0)                              # (B', C_out, L)
        pattern = "(b w) c h -> b c h w" if self.axis == "height" else "(b h) c w -> b c h w"
        other = {"w": dims["W"]} if self.axis == "height" else {"h": dims["H"]}   # both sizes: B may be 0
        y = rearrange(y, pattern, b=dims["B"], **other)                    # (B, C_out, H, W)
        return F.avg_pool2d(y, self.stride) if self.stride > 1 else y

    def extra_repr(self) -> str:
        return (f"{self.dim}, {self.dim_out}, heads={self.heads}, span={self.span}, axis={self.axis}, "
                f"stride={self.stride}, position={self.position}, norm={self.norm}, gated={self.gated}")
