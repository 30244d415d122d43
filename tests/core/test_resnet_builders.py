"""core.resnet: the pluggable norm/conv/activation factories reach every layer, zero-init of the last norm makes each
block its shortcut, stage shapes and strides, the paper's initialisation, and transformers' ResNet as a reference."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archzoo.core.resnet import (
    BasicBlock,
    Bottleneck,
    CifarResNet,
    ResNet,
    ResNetBase,
    ZeroPadShortcut,
    make_shortcut,
    make_stages,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class CountingNorm:
    """A `norm_layer` that records the channels of every norm it builds (GroupNorm with 2 groups)."""

    def __init__(self):
        self.channels = []

    def __call__(self, channels: int) -> nn.Module:
        self.channels.append(channels)
        return nn.GroupNorm(2, channels)


class MarkedConv(nn.Conv2d):
    """A `conv_layer`: nn.Conv2d's signature, a type of its own."""


def tiny_resnet(block=Bottleneck, **kw) -> ResNet:
    torch.manual_seed(0)
    return ResNet(block, (2, 1), num_classes=5, in_chans=2, widths=(4, 8), **kw)


# ----------------------------------------------------------------------------- pluggable layers


@pytest.mark.parametrize("make", [
    lambda **kw: tiny_resnet(**kw),                                      # stem, bottlenecks, two projections
    lambda **kw: CifarResNet(8, width=4, shortcut="B", **kw),           # stem, basic blocks, two projections
])
def test_the_norm_factory_builds_every_norm_of_the_network(make):
    norm = CountingNorm()
    model = make(norm_layer=norm)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norm.channels) == len(norms) > 0
    assert sorted(norm.channels) == sorted(m.num_channels for m in norms)
    assert not [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m for m in model.modules() if isinstance(m, nn.Sequential) and len(m) == 2
            and isinstance(m[1], nn.GroupNorm)], "the projection shortcuts use the norm factory too"


def test_the_conv_factory_builds_every_convolution_stem_and_shortcuts_included():
    model = tiny_resnet(conv_layer=MarkedConv)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is MarkedConv for m in convs)
    assert len(convs) == 1 + 3 * 3 + 2                                   # stem, 3 bottlenecks, 2 projections


def test_a_group_norm_resnet_has_exactly_the_batch_norm_nets_parameters():
    # GN has BN's per-channel gamma and beta and no running statistics (Wu & He 2018, Sec. 3.1)
    assert n_params(tiny_resnet(norm_layer=lambda c: nn.GroupNorm(2, c))) == n_params(tiny_resnet())


@pytest.mark.parametrize("block, act", [(BasicBlock, nn.Tanh), (Bottleneck, nn.GELU)])
def test_the_act_factory_is_the_blocks_nonlinearity(block, act):
    torch.manual_seed(0)
    b = block(8, 8 // block.expansion, act_layer=act).double().eval()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    f = x
    convs, norms = [b.conv1, b.conv2, getattr(b, "conv3", None)], [b.bn1, b.bn2, getattr(b, "bn3", None)]
    convs, norms = [c for c in convs if c is not None], [n for n in norms if n is not None]
    for i, (conv, norm) in enumerate(zip(convs, norms)):
        f = norm(conv(f))
        if i < len(convs) - 1:
            f = act()(f)
    torch.testing.assert_close(b(x), act()(f + x))                      # Eq. 1 with the given nonlinearity


# ----------------------------------------------------------------------------- zero-init and initialisation


@pytest.mark.parametrize("norm_layer", [nn.BatchNorm2d, lambda c: nn.GroupNorm(2, c)])
def test_zero_init_of_the_last_norm_makes_every_block_its_shortcut(norm_layer):
    model = tiny_resnet(norm_layer=norm_layer, zero_init_residual=True).double().eval()
    x = torch.rand(2, 4, 6, 6, dtype=torch.float64)                     # a post-ReLU input: >= 0
    for block in (b for stage in model.stages for b in stage):
        assert torch.count_nonzero(block.last_norm.weight) == 0
        assert torch.all(block.bn1.weight == 1)                          # only the last norm
        x = x.repeat(1, block.conv1.in_channels // x.shape[1], 1, 1)
        torch.testing.assert_close(block(x), F.relu(block.shortcut(x)), rtol=0, atol=0)
        if isinstance(block.shortcut, nn.Identity):
            torch.testing.assert_close(block(x), x, rtol=0, atol=0)    # an identity block at init


def test_finish_zero_inits_any_block_that_names_its_last_norm():
    class ScaledBlock(nn.Module):                                        # a paper's own block
        expansion = 2

        def __init__(self, in_channels, channels, stride=1):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, channels * 2, 3, stride, 1, bias=False)
            self.norm = nn.BatchNorm2d(channels * 2)

        @property
        def last_norm(self):
            return self.norm

        def forward(self, x):
            return self.norm(self.conv(x))

    class Net(ResNetBase):
        def __init__(self, zero_init_residual):
            super().__init__(num_classes=3, in_chans=1)
            self.stem = nn.Identity()
            self.stages, num_features = make_stages(ScaledBlock, 1, (2, 4), (1, 1))
            self.finish(num_features, zero_init_residual)

    assert all(torch.all(b.norm.weight == 0) for s in Net(True).stages for b in s)
    assert all(torch.all(b.norm.weight == 1) for s in Net(False).stages for b in s)
    assert Net(True).num_features == 8 and Net(True)(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_finish_initialises_convolutions_kaiming_fan_out_and_batch_norm_to_identity():
    torch.manual_seed(0)
    model = ResNet(Bottleneck, (1,), num_classes=2, widths=(64,))
    conv3 = model.stages[0][0].conv3                                     # fan_in 64, fan_out 256
    assert conv3.weight.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.05)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


# ----------------------------------------------------------------------------- stages, shortcuts, stems


@pytest.mark.parametrize("block, widths, out", [(BasicBlock, (8, 16, 32), 32), (Bottleneck, (4, 8, 16), 64)])
def test_stages_halve_the_resolution_after_the_first_with_the_stride_on_the_first_block_only(block, widths, out):
    stages, num_features = make_stages(block, 8, widths, (2, 2, 1))
    assert num_features == out
    x = torch.randn(1, 8, 17, 17)
    sizes = []
    for i, stage in enumerate(stages):
        first_conv_strides = [max(m.stride) for m in stage[0].modules() if isinstance(m, nn.Conv2d)]
        assert max(first_conv_strides) == (1 if i == 0 else 2)
        assert all(max(m.stride) == 1 for b in stage[1:] for m in b.modules() if isinstance(m, nn.Conv2d))
        x = stage(x)
        sizes.append(tuple(x.shape[1:]))
    e = block.expansion
    assert sizes == [(widths[0] * e, 17, 17), (widths[1] * e, 9, 9), (widths[2] * e, 5, 5)]


def test_make_stages_needs_one_width_per_stage():
    with pytest.raises(ValueError, match="same length"):
        make_stages(BasicBlock, 8, (8, 16), (1, 1, 1))


def test_make_shortcut_is_the_identity_where_the_shape_is_kept_else_option_a_or_b():
    assert isinstance(make_shortcut("A", 8, 8, 1), nn.Identity) and isinstance(make_shortcut("B", 8, 8, 1), nn.Identity)
    assert isinstance(make_shortcut("A", 8, 16, 2), ZeroPadShortcut)
    b = make_shortcut("B", 8, 16, 2, norm_layer=lambda c: nn.GroupNorm(4, c), conv_layer=MarkedConv)
    assert type(b[0]) is MarkedConv and b[0].stride == (2, 2) and isinstance(b[1], nn.GroupNorm)
    with pytest.raises(ValueError, match="shortcut must be one of"):
        make_shortcut("C", 8, 16, 2)


def test_stride_in_1x1_applies_to_bottlenecks_only():
    with pytest.raises(ValueError, match="bottleneck"):
        ResNet(BasicBlock, (1, 1), widths=(4, 8), stride_in_1x1=True)


def test_imagenet_resnet_stem_and_stages_downsample_by_4_then_32():
    model = tiny_resnet(block=BasicBlock).eval()
    x = torch.randn(1, 2, 64, 64)
    assert model.stem(x).shape == (1, 4, 16, 16)
    assert model.forward_features(x).shape == (1, 8, 8, 8)               # two stages: /4 then /2


# ----------------------------------------------------------------------------- reference: transformers' ResNet


def hf_key(ours: str) -> str:
    """Our ImageNet ResNet's state-dict key -> transformers' ResNetForImageClassification's."""
    if ours.startswith("stem."):
        _, i, param = ours.split(".", 2)
        return f"resnet.embedder.embedder.{ {'0': 'convolution', '1': 'normalization'}[i]}.{param}"
    if ours.startswith("fc."):
        return "classifier.1." + ours[3:]
    _, s, b, module, rest = ours.split(".", 4)                          # stages.<s>.<b>.<module>.<rest>
    prefix = f"resnet.encoder.stages.{s}.layers.{b}"
    if module == "shortcut":
        i, param = rest.split(".", 1)
        return f"{prefix}.shortcut.{ {'0': 'convolution', '1': 'normalization'}[i]}.{param}"
    kind, i = module[:-1], int(module[-1]) - 1                           # conv2 -> layer.1.convolution
    return f"{prefix}.layer.{i}.{ {'conv': 'convolution', 'bn': 'normalization'}[kind]}.{rest}"


@pytest.mark.reference
@pytest.mark.parametrize("block, layer_type, hidden", [(BasicBlock, "basic", [4, 8]),
                                                       (Bottleneck, "bottleneck", [16, 32])])
def test_imagenet_resnet_equals_transformers_resnet_after_copying_weights(block, layer_type, hidden):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ResNetConfig(num_channels=2, embedding_size=4, hidden_sizes=hidden, depths=[2, 1],
                                       layer_type=layer_type, num_labels=5)
    theirs = transformers.ResNetForImageClassification(config).double().eval()
    ours = tiny_resnet(block).double().eval()
    state = theirs.state_dict()
    assert len(ours.state_dict()) == len(state)                          # one to one
    ours.load_state_dict({k: state[hf_key(k)] for k in ours.state_dict()})
    for m in ours.modules():                                             # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    theirs.load_state_dict({hf_key(k): v for k, v in ours.state_dict().items()})
    x = torch.randn(2, 2, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(pixel_values=x).logits)
