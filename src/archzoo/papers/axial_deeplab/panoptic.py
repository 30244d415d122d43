r"""Axial-DeepLab for panoptic segmentation (Wang et al. 2020, arXiv:2003.07853, Sec. 3.3, Fig. 3).

Axial-DeepLab is Panoptic-DeepLab (Cheng et al. 2020, arXiv:1911.10194) on an Axial-ResNet backbone. Three heads
read the backbone's features: semantic logits (one per class), an instance *centre heatmap* and per-pixel *centre
offsets* (the vector from a thing pixel to the centre of mass of its instance). Training targets (Panoptic-DeepLab
Sec. 3.2): the heatmap is a 2D Gaussian of standard deviation sigma around every instance centre; the offsets are
regressed on thing pixels only:

    L = CE(semantic) + \lambda_c MSE(heatmap) + \lambda_o L1(offsets on thing pixels)

Grouping at inference (Panoptic-DeepLab Sec. 3.3, `panoptic_inference`): centres are the local maxima of the heatmap
(keypoint NMS by max-pooling) above a threshold, at most `top_k`; every thing pixel x moves by its offset and joins
the nearest centre, k(x) = argmin_k ||c_k - (x + o(x))||; each instance takes the majority semantic class of its
pixels; stuff pixels keep their semantic class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.checks import check_image, check_shape
from ...registry import register_model
from .models import AxialResNet


def head(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """A prediction head: 3x3 convolution, BN, ReLU, 1x1 convolution."""
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden),
                         nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 1))


class AxialDeepLab(nn.Module):
    """Axial-ResNet backbone (stride `patch_size`, no further downsampling) + semantic, centre and offset heads,
    upsampled bilinearly to the input size. `forward(x)` returns {"semantic": (B, K, H, W), "center": (B, 1, H, W),
    "offset": (B, 2, H, W)} with offsets (dy, dx) in input pixels. `block="conv"` puts the same heads on the
    backbone's convolutional twin (each axial-attention pair a 3x3 convolution: Panoptic-DeepLab on a ResNet)."""

    def __init__(self, num_classes: int = 5, in_chans: int = 1, img_size: int = 32, *, layers: Sequence[int] = (1,),
                 planes: Sequence[int] = (32,), stem_width: int = 32, patch_size: int = 2, heads: int = 4,
                 head_width: int = 32, position: str = "qkv", norm: bool = True, gated: bool = False,
                 block: str = "axial"):
        super().__init__()
        self.num_classes, self.in_chans, self.patch_size = num_classes, in_chans, patch_size
        self.default_input_size = (in_chans, img_size, img_size)
        self.backbone = AxialResNet(layers, width_multiplier=1.0, planes=planes, strides=(1,) * len(layers),
                                    stem_width=stem_width, stem="patch", patch_size=patch_size, num_classes=0,
                                    in_chans=in_chans, img_size=img_size, heads=heads, position=position, norm=norm,
                                    gated=gated, block=block)
        self.min_input_size = self.backbone.min_input_size
        c = self.backbone.num_features
        self.semantic_head = head(c, head_width, num_classes)
        self.center_head = head(c, head_width, 1)
        self.offset_head = head(c, head_width, 2)

    def forward(self, x: Tensor) -> dict[str, Tensor]:                      # (B, C, H, W)
        x = check_image(x, self, C=self.in_chans)
        f = self.backbone.forward_features(x)                                  # (B, C', H/p, W/p)

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)

        return {"semantic": up(self.semantic_head(f)),                          # (B, K, H, W)
                "center": up(self.center_head(f)),                              # (B, 1, H, W)
                "offset": up(self.offset_head(f)) * self.patch_size}            # (B, 2, H, W), input pixels


@register_model(paper="axial_deeplab", input_size=(1, 32, 32), mean=(0.0,), std=(1.0,), num_classes=5,
                task="panoptic-segmentation")
def axial_deeplab_tiny(**kwargs) -> AxialDeepLab:
    """A small Axial-DeepLab for 32x32 shape scenes: 2x2 patch stem, one axial block at 16x16 (32 attention
    channels, 4 heads; global along both axes), semantic / centre / offset heads of width 32."""
    return AxialDeepLab(**kwargs)


def panoptic_targets(instance: Tensor, sigma: float = 2.0) -> tuple[Tensor, Tensor]:
    """Centre heatmap (B, 1, H, W) (max over instances of a Gaussian at each centre of mass) and offsets
    (B, 2, H, W) (centre minus pixel on thing pixels, 0 elsewhere) from instance maps (B, H, W), 0 = stuff."""
    check_shape(instance, "B H W", name="instance", dtype="int")
    b, h, w = instance.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    heatmap = torch.zeros(b, 1, h, w)
    offset = torch.zeros(b, 2, h, w)
    for i in range(b):
        for k in instance[i].unique().tolist():
            if k == 0:
                continue
            mask = instance[i] == k
            cy, cx = ys[mask].mean(), xs[mask].mean()                          # centre of mass
            g = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma ** 2))
            heatmap[i, 0] = torch.maximum(heatmap[i, 0], g)
            offset[i, 0][mask], offset[i, 1][mask] = cy - ys[mask], cx - xs[mask]
    return heatmap, offset


def panoptic_loss(out: dict[str, Tensor], semantic: Tensor, heatmap: Tensor, offset: Tensor, instance: Tensor,
                  center_weight: float = 200.0, offset_weight: float = 0.1) -> Tensor:
    """CE(semantic) + lambda_c MSE(centre heatmap) + lambda_o L1(offsets, mean over thing pixels)."""
    things = (instance > 0).unsqueeze(1).float()                              # (B, 1, H, W)
    l1 = ((out["offset"] - offset).abs() * things).sum() / things.sum().clamp_min(1.0)
    return (F.cross_entropy(out["semantic"], semantic) + center_weight * F.mse_loss(out["center"], heatmap)
            + offset_weight * l1)


@torch.no_grad()
def find_centers(heatmap: Tensor, threshold: float = 0.1, nms_kernel: int = 3, top_k: int = 16) -> Tensor:
    """Instance centres of one heatmap (H, W): local maxima (max-pooling NMS) above `threshold`, the `top_k`
    highest; returns (K, 2) integer (y, x) positions, highest score first."""
    check_shape(heatmap, "H W", name="heatmap")
    pooled = F.max_pool2d(heatmap[None, None], nms_kernel, stride=1, padding=nms_kernel // 2)[0, 0]
    scores = torch.where((heatmap == pooled) & (heatmap > threshold), heatmap, torch.zeros_like(heatmap))
    n = int((scores > 0).sum())
    top = scores.flatten().topk(min(n, top_k)).indices
    return torch.stack([top // heatmap.shape[1], top % heatmap.shape[1]], -1)


@torch.no_grad()
def panoptic_inference(out: dict[str, Tensor], thing_ids: Sequence[int], threshold: float = 0.1, nms_kernel: int = 3,
                       top_k: int = 16) -> tuple[Tensor, Tensor]:
    """Semantic (B, H, W) and instance (B, H, W) maps from the three heads' outputs (the grouping above).

    Thing pixels join the nearest centre after adding their offset; each instance takes its pixels' majority class.
    With no centre in an image, its thing pixels are void (semantic -1, instance 0).
    """
    semantic = out["semantic"].argmax(1)                                       # (B, H, W)
    b, h, w = semantic.shape
    instance = torch.zeros_like(semantic)
    is_thing = torch.isin(semantic, torch.tensor(list(thing_ids), device=semantic.device))
    ys, xs = torch.meshgrid(torch.arange(h, device=semantic.device), torch.arange(w, device=semantic.device),
                            indexing="ij")
    for i in range(b):
        centers = find_centers(out["center"][i, 0], threshold, nms_kernel, top_k).float()   # (K, 2)
        if len(centers) == 0:
            semantic[i][is_thing[i]] = -1
            continue
        moved = torch.stack([ys + out["offset"][i, 0], xs + out["offset"][i, 1]], -1)       # x + o(x), (H, W, 2)
        nearest = torch.cdist(moved.reshape(-1, 2), centers).argmin(-1).reshape(h, w) + 1   # k(x), 1..K
        instance[i] = torch.where(is_thing[i], nearest, torch.zeros_like(nearest))
        for k in instance[i][is_thing[i]].unique():                            # majority vote of the class
            mask = instance[i] == k
            semantic[i][mask] = semantic[i][mask].mode().values
    return semantic, instance
