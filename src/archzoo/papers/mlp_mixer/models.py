r"""MLP-Mixer (Tolstikhin et al. 2021, arXiv:2105.01601, Sec. 2, Fig. 1) and its presets (Table 1).

The image is cut into S non-overlapping P x P patches, each projected linearly to C channels ("per-patch fully
connected", the same projection for every patch); N Mixer layers (Eq. 1, `MixerLayer`) follow, then a LayerNorm,
global average pooling over the patches and a linear classifier. No convolutions beyond the patch projection, no
self-attention, no position embedding: the token-mixing MLP is itself sensitive to the order of the patches.

Presets (`archzoo.create_model("mixer_b16", num_classes=10, img_size=32)`), Table 1 of the paper; parameter counts
with 1000 classes at 224 x 224; the paper's Table 1 counts (in millions) match ours without the classifier:

    name        P   C     D_S  D_C   layers   parameters    (paper, no head)
    mixer_s32   32  512   256  2048    8      19,104,624    (19M)
    mixer_s16   16  512   256  2048    8      18,528,264    (18M)
    mixer_b32   32  768   384  3072   12      60,293,428    (60M)
    mixer_b16   16  768   384  3072   12      59,880,472    (59M)
    mixer_l32   32  1024  512  4096   24     206,939,264    (206M)
    mixer_l16   16  1024  512  4096   24     208,196,168    (207M)
    mixer_h14   14  1280  640  5120   32     432,350,952    (431M)
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier, init_head
from ...core.embeddings import PatchEmbed
from ...registry import IMAGENET_CFG, INCEPTION_MEAN, INCEPTION_STD, register_model
from .mixing import MixerLayer


class MlpMixer(Classifier, nn.Module):
    r"""MLP-Mixer (Sec. 2, Fig. 1): per-patch linear embedding, `depth` Mixer layers, LayerNorm, mean pool, head.

    - `img_size` and `patch_size` fix S = HW / P^2, the width of the token-mixing MLP, so the input must have
      exactly `img_size` (the paper's fine-tuning at higher resolution, Appendix C, is not implemented).
    - `dim` is the hidden size C, `token_mlp_dim` D_S, `channel_mlp_dim` D_C, `depth` the number of layers N.
    - Initialization as in the released models: LeCun-normal weights (fan-in) and zero biases for the patch
      projection and every MLP, and a zero-initialized classifier.

    `forward_features(x)` returns the per-patch features after the final LayerNorm, (B, S, C); `forward_head`
    averages them over the patches (global average pooling) and applies the classifier (`core.Classifier`).
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int | tuple[int, int] = 16,
                 in_chans: int = 3, num_classes: int = 1000, dim: int = 768, depth: int = 12,
                 token_mlp_dim: int = 384, channel_mlp_dim: int = 3072, dropout: float = 0.0,
                 layer_norm_eps: float = 1e-6):
        super().__init__()
        if num_classes < 0 or in_chans < 1 or depth < 1:
            raise ValueError(f"num_classes must be >= 0, in_chans >= 1 and depth >= 1, got {num_classes}, "
                             f"{in_chans} and {depth}")
        self.num_classes, self.in_chans, self.dim, self.depth = num_classes, in_chans, dim, depth
        self.token_mlp_dim, self.channel_mlp_dim = token_mlp_dim, channel_mlp_dim
        self.stem = PatchEmbed(img_size, patch_size, in_chans, dim)                     # per-patch fully connected
        self.img_size, self.patch_size = self.stem.img_size, self.stem.patch_size
        self.num_patches = self.stem.num_patches                                        # S
        self.default_input_size = (in_chans, *self.img_size)
        self.layers = nn.Sequential(*[MixerLayer(self.num_patches, dim, token_mlp_dim, channel_mlp_dim, dropout,
                                                 layer_norm_eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=layer_norm_eps)                               # pre-head LayerNorm
        self.num_features = dim
        self._init_weights()
        self.head = self.new_head(num_classes)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(m.weight, std=1 / math.sqrt(m.weight[0].numel()))      # LeCun normal (fan-in)
                nn.init.zeros_(m.bias)

    def new_head(self, num_classes: int) -> nn.Module:
        """A zero-initialized classifier with `num_classes` outputs (0: none, forward returns the pooled C)."""
        return init_head(super().new_head(num_classes))

    def forward_features(self, x: Tensor) -> Tensor:                                    # (B, C_in, H, W)
        x = check_image(x, self, C=self.in_chans, H=self.img_size[0], W=self.img_size[1])
        x = self.stem(x)                                                               # (B, S, C): the table X
        return self.norm(self.layers(x))                                               # (B, S, C)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:               # (B, S, C)
        x = x.mean(dim=1)                                                              # global average pooling
        return x if pre_logits else self.head(x)                                       # (B, num_classes)


def _mixer(kwargs: dict, **config) -> MlpMixer:
    return MlpMixer(**{**config, **kwargs})


_S = dict(dim=512, depth=8, token_mlp_dim=256, channel_mlp_dim=2048)
_B = dict(dim=768, depth=12, token_mlp_dim=384, channel_mlp_dim=3072)
_L = dict(dim=1024, depth=24, token_mlp_dim=512, channel_mlp_dim=4096)
_H = dict(dim=1280, depth=32, token_mlp_dim=640, channel_mlp_dim=5120)


def mixer_cfg(patch_size: int) -> dict:
    """pretrained_cfg: the released models take RGB scaled to [-1, 1] (mean = std = 0.5 for inputs in [0, 1]); the
    token-mixing MLPs fix the input size, whose side must be a multiple of the patch size (one patch at least)."""
    return dict(IMAGENET_CFG, mean=INCEPTION_MEAN, std=INCEPTION_STD, fixed_input_size=True,
                min_input_size=(3, patch_size, patch_size))


@register_model(paper="mlp_mixer", **mixer_cfg(32))
def mixer_s32(**kwargs) -> MlpMixer:
    """Mixer-S/32 (Table 1): C=512, D_S=256, D_C=2048, 8 layers, 32 x 32 patches; 19,104,624 parameters."""
    return _mixer(kwargs, patch_size=32, **_S)


@register_model(paper="mlp_mixer", **mixer_cfg(16))
def mixer_s16(**kwargs) -> MlpMixer:
    """Mixer-S/16 (Table 1): C=512, D_S=256, D_C=2048, 8 layers, 16 x 16 patches; 18,528,264 parameters."""
    return _mixer(kwargs, patch_size=16, **_S)


@register_model(paper="mlp_mixer", **mixer_cfg(32))
def mixer_b32(**kwargs) -> MlpMixer:
    """Mixer-B/32 (Table 1): C=768, D_S=384, D_C=3072, 12 layers, 32 x 32 patches; 60,293,428 parameters."""
    return _mixer(kwargs, patch_size=32, **_B)


@register_model(paper="mlp_mixer", **mixer_cfg(16))
def mixer_b16(**kwargs) -> MlpMixer:
    """Mixer-B/16 (Table 1): C=768, D_S=384, D_C=3072, 12 layers, 16 x 16 patches; 59,880,472 parameters."""
    return _mixer(kwargs, patch_size=16, **_B)


@register_model(paper="mlp_mixer", **mixer_cfg(32))
def mixer_l32(**kwargs) -> MlpMixer:
    """Mixer-L/32 (Table 1): C=1024, D_S=512, D_C=4096, 24 layers, 32 x 32 patches; 206,939,264 parameters."""
    return _mixer(kwargs, patch_size=32, **_L)


@register_model(paper="mlp_mixer", **mixer_cfg(16))
def mixer_l16(**kwargs) -> MlpMixer:
    """Mixer-L/16 (Table 1): C=1024, D_S=512, D_C=4096, 24 layers, 16 x 16 patches; 208,196,168 parameters."""
    return _mixer(kwargs, patch_size=16, **_L)


@register_model(paper="mlp_mixer", **mixer_cfg(14))
def mixer_h14(**kwargs) -> MlpMixer:
    """Mixer-H/14 (Table 1): C=1280, D_S=640, D_C=5120, 32 layers, 14 x 14 patches; 432,350,952 parameters."""
    return _mixer(kwargs, patch_size=14, **_H)
