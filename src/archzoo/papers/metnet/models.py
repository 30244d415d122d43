r"""MetNet (Sønderby et al. 2020, arXiv:2003.12140, Sec. 3): a probabilistic precipitation forecast from a stack of
input frames and a lead time.

    x_t' = [x_t; onehot(lead)]                       lead-time conditioning: the one-hot lead time is concatenated
                                                     to every input frame (Sec. 3.1)
    z_t  = Downsampler(x_t')                         3x3 convolutions and 2x2 max pooling, 4x smaller (Sec. 3.1)
    h    = ConvLSTM(z_1 .. z_T)                      the temporal encoder's last state (Sec. 3.2, `convlstm.py`)
    a    = AxialAggregator(h)                        axial self-attention along columns, then rows, repeated, so
                                                     that every position sees the whole map (Sec. 3.3)
    p(r | x, lead) = softmax(W a), upsampled 4x      a categorical distribution over rain-rate bins (Sec. 3.4)

trained with the cross-entropy of the observed rate's bin. The axial attention is Axial-DeepLab's
(`archzoo.papers.axial_deeplab.AxialAttention`, position-sensitive, Wang et al. 2020), imported as it is: MetNet takes
axial attention from Ho et al. (2019, arXiv:1912.12180), whose 1D attentions along each axis are the same idea;
each layer here is a residual x + Attention_axis(x).

Inputs are `(B, T * C, H, W)`: T frames of C channels, frame-major (radar only: C = 1, `(B, T, H, W)`). H and W are
multiples of 4 and at most `img_size`, the span of the relative position encodings. The output is `(B, bins, H, W)`
logits over bins of `bin_width` mm/h (the last bin open above); MetNet predicts the centre of its context at 1 km, we
predict the whole grid at the input's resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.checks import as_model_dtype, check_shape
from ...registry import register_model
from ..axial_deeplab import AxialAttention
from .convlstm import ConvLSTM

FACTOR = 4                          # the downsampler's two 2x2 poolings


class SpatialDownsampler(nn.Module):
    """Sec. 3.1: a 3x3 convolution to `channels[0]`, 2x2 max pooling, three 3x3 convolutions to `channels[1]`, 2x2 max
    pooling (ReLU after each convolution): (B, C_in, H, W) -> (B, channels[1], H / 4, W / 4)."""

    def __init__(self, in_channels: int, channels: Sequence[int] = (160, 256)):
        super().__init__()
        c1, c2 = channels
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AxialAggregator(nn.Module):
    """Sec. 3.3: `depth` residual axial self-attention layers, alternating the height axis (within columns) and the
    width axis (within rows). After one column and one row layer every output position depends on every input
    position: the receptive field is the whole map."""

    def __init__(self, dim: int, depth: int = 8, heads: int = 16, span: int = 64):
        super().__init__()
        self.layers = nn.ModuleList(AxialAttention(dim, heads=heads, span=span, axis=("height", "width")[i % 2])
                                    for i in range(depth))

    def forward(self, x: Tensor) -> Tensor:                       # (B, dim, H, W)
        for attention in self.layers:
            x = x + attention(x)
        return x


def lead_time_one_hot(lead_time: Tensor | int, lead_times: int, batch: int, like: Tensor) -> Tensor:
    """The one-hot lead time (B, lead_times) of an int or a (B,) integer tensor; out of range is a ValueError."""
    lead = torch.as_tensor(lead_time, device=like.device)
    if lead.is_floating_point() or lead.dim() > 1 or (lead.dim() == 1 and len(lead) != batch):
        raise ValueError(f"lead_time: expected an int or an integer tensor of shape ({batch},), got "
                         f"{tuple(lead.shape)} {lead.dtype}")
    if lead.numel() and not (0 <= int(lead.min()) and int(lead.max()) < lead_times):
        raise ValueError(f"lead_time: expected values in [0, {lead_times}), got {lead.tolist()}")
    return F.one_hot(lead.long().expand(batch), lead_times).to(like.dtype)


class MetNet(nn.Module):
    """MetNet (Sec. 3): (B, context * in_chans, H, W) frames and a lead time -> (B, bins, H, W) logits.

    `context` T input frames of `in_chans` channels; `lead_times` forecast steps (the one-hot's size); `channels` of
    the downsampler; `hidden` the ConvLSTM's and the aggregator's width; `depth` axial attention layers of `heads`
    heads; `img_size` the largest H, W (the span of the relative encodings is img_size / 4); `bins` of `bin_width`.
    `forward(x, lead_time=0)`: `lead_time` an int or a (B,) integer tensor in [0, lead_times).
    """

    def __init__(self, context: int = 7, in_chans: int = 1, lead_times: int = 240, img_size: int = 256,
                 channels: Sequence[int] = (160, 256), hidden: int = 384, depth: int = 8, heads: int = 16,
                 bins: int = 512, bin_width: float = 0.2):
        super().__init__()
        if img_size % FACTOR:
            raise ValueError(f"img_size must be a multiple of {FACTOR}, got {img_size}")
        self.context, self.in_chans, self.lead_times, self.img_size = context, in_chans, lead_times, img_size
        self.bins, self.bin_width = bins, bin_width
        self.out_channels = self.num_features = bins          # a field-to-field operator: bins per pixel
        self.downsampler = SpatialDownsampler(in_chans + lead_times, channels)
        self.encoder = ConvLSTM(channels[1], hidden)
        self.aggregator = AxialAggregator(hidden, depth, heads, span=img_size // FACTOR)
        self.head = nn.Conv2d(hidden, bins, 1)

    def forward(self, x: Tensor, lead_time: Tensor | int = 0) -> Tensor:
        dims = check_shape(x, "B C H W", C=self.context * self.in_chans)
        h, w = dims["H"], dims["W"]
        if h % FACTOR or w % FACTOR or not (0 < h <= self.img_size and 0 < w <= self.img_size):
            raise ValueError(f"input: expected H and W multiples of {FACTOR} between {FACTOR} and {self.img_size} "
                             f"(img_size), got {h}x{w}")
        x = as_model_dtype(x, self)
        frames = rearrange(x, "b (t c) h w -> b t c h w", t=self.context)
        lead = lead_time_one_hot(lead_time, self.lead_times, dims["B"], x)                # (B, L)
        lead = lead[:, None, :, None, None].expand(-1, self.context, -1, h, w)            # (B, T, L, H, W)
        frames = torch.cat([frames, lead], dim=2)                                         # x_t' = [x_t; onehot]
        z = self.downsampler(rearrange(frames, "b t c h w -> (b t) c h w"))              # (B T, C', H/4, W/4)
        z = rearrange(z, "(b t) c h w -> b t c h w", b=dims["B"])
        a = self.aggregator(self.encoder(z))                                              # (B, hidden, H/4, W/4)
        return F.interpolate(self.head(a), size=(h, w), mode="bilinear", align_corners=False)   # (B, bins, H, W)

    # the categorical output (Sec. 3.4)

    def rate_to_bin(self, rate: Tensor) -> Tensor:
        """The bin of each rain rate: floor(rate / bin_width), the last bin open above (int64, rate's shape)."""
        return (rate / self.bin_width).floor().clamp(0, self.bins - 1).long()

    def bin_centres(self, like: Tensor) -> Tensor:
        return (torch.arange(self.bins, device=like.device, dtype=like.dtype) + 0.5) * self.bin_width

    def expected_rate(self, logits: Tensor) -> Tensor:
        """E[r] = sum_k p_k r_k over the bin centres r_k: (B, bins, H, W) -> (B, H, W)."""
        return torch.einsum("bkhw,k->bhw", logits.softmax(1), self.bin_centres(logits))

    def exceedance(self, logits: Tensor, threshold: float) -> Tensor:
        """P(r >= threshold), the mass of the bins at or above it (a multiple of bin_width): (B, H, W)."""
        first = round(threshold / self.bin_width)
        if abs(first * self.bin_width - threshold) > 1e-6:
            raise ValueError(f"threshold must be a multiple of bin_width={self.bin_width}, got {threshold}")
        return logits.softmax(1)[:, first:].sum(1)


def forecast_loss(model: MetNet, batch) -> Tensor:
    """The cross-entropy of the observed rate's bin (Sec. 3.4), on a (frames, lead, target rate) batch."""
    x, lead, y = batch
    return F.cross_entropy(model(x, lead), model.rate_to_bin(y))


FORECAST = dict(num_classes=0, task="operator")


@register_model(paper="metnet", input_size=(7, 256, 256), **FORECAST)
def metnet(context: int = 7, in_chans: int = 1, lead_times: int = 240, img_size: int = 256, bins: int = 512,
           bin_width: float = 0.2) -> MetNet:
    """MetNet's network as Sec. 3 lays it out: 7 input frames (90 min every 15 min), 240 lead times (8 h every
    2 min), a 160/256-channel downsampler, a 384-channel ConvLSTM, 8 axial attention layers of 16 heads, 512 bins of
    0.2 mm/h. On radar alone (in_chans=1; the paper adds satellite and static channels): 13,375,680 parameters."""
    return MetNet(context, in_chans, lead_times, img_size, (160, 256), 384, 8, 16, bins, bin_width)


@register_model(paper="metnet", input_size=(4, 32, 32), **FORECAST)
def metnet_lite(context: int = 4, in_chans: int = 1, lead_times: int = 8, img_size: int = 32, bins: int = 48,
                bin_width: float = 0.25, channels: Sequence[int] = (8, 16), hidden: int = 32, depth: int = 2,
                heads: int = 4) -> MetNet:
    """MetNet-lite of the claims: 4 frames of 32 x 32, 8 lead times, an 8/16-channel downsampler, a 32-channel
    ConvLSTM, 2 axial attention layers (one column, one row) of 4 heads, 48 bins of 0.25 mm/h (up to 12 mm/h):
    68,608 parameters."""
    return MetNet(context, in_chans, lead_times, img_size, tuple(channels), hidden, depth, heads, bins, bin_width)
