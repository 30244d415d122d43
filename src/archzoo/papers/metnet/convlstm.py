r"""The convolutional LSTM (Shi et al. 2015, arXiv:1506.04214, Sec. 3.1, Eq. 3), MetNet's temporal encoder (Sec. 3.2).

An LSTM whose input-to-state and state-to-state maps are convolutions, so that the state (C, H, W) keeps the map's
geometry: with * a convolution and o the elementwise product,

    i_t = sigma(W_xi * x_t + W_hi * h_{t-1} + b_i)
    f_t = sigma(W_xf * x_t + W_hf * h_{t-1} + b_f)
    c_t = f_t o c_{t-1} + i_t o tanh(W_xc * x_t + W_hc * h_{t-1} + b_c)
    o_t = sigma(W_xo * x_t + W_ho * h_{t-1} + b_o)
    h_t = o_t o tanh(c_t)

Shi et al. also add peephole terms W_c o c to the gates; we leave them out, as most ConvLSTM code does. The four
gates come from one convolution of the concatenation [x_t; h_{t-1}] (the W_x and W_h of a gate side by side).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...core.checks import check_shape


class ConvLSTMCell(nn.Module):
    """One step (Eq. 3): (x_t (B, C_in, H, W), (h, c) (B, C, H, W) each) -> (h_t, c_t)."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the state keeps the map's size), got {kernel_size}")
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)          # [W_x. W_h.] for . = i, f, c, o, with b_.

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)                # c_t
        h = torch.sigmoid(o) * torch.tanh(c)                                      # h_t
        return h, c


class ConvLSTM(nn.Module):
    """Runs a `ConvLSTMCell` over a sequence (B, T, C_in, H, W) from zero states; returns the last h_T (B, C, H, W),
    MetNet's summary of the input frames."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.cell = ConvLSTMCell(in_channels, hidden_channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:                        # (B, T, C_in, H, W)
        dims = check_shape(x, "B T C H W", name="sequence", C=self.cell.in_channels)
        h = x.new_zeros(dims["B"], self.cell.hidden_channels, dims["H"], dims["W"])
        state = (h, h)
        for t in range(dims["T"]):
            state = self.cell(x[:, t], state)
        return state[0]                                            # h_T: (B, C, H, W)
