"""ResNet (He et al. 2015, arXiv:1512.03385): parameter counts, shortcuts, plain twins, interfaces, the claim."""


import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.papers.resnet import BasicBlock, Bottleneck, CifarResNet, ZeroPadShortcut


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, count", [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
    ("resnet101", 44_549_160), ("resnet152", 60_192_808),
])
def test_imagenet_presets_have_the_reference_parameter_counts(name, count):
    assert n_params(archzoo.create_model(name)) == count


@pytest.mark.parametrize("name, count, table6", [
    ("resnet20", 269_722, "0.27"), ("resnet32", 464_154, "0.46"), ("resnet44", 658_586, "0.66"),
    ("resnet56", 853_018, "0.85"), ("resnet110", 1_727_962, "1.7"),
])
def test_cifar_presets_match_table6_parameter_counts(name, count, table6):
    n = n_params(archzoo.create_model(name))
    assert n == count
    assert f"{n / 1e6:.2g}" == table6                  # Table 6 gives millions to two significant digits


def test_projection_shortcuts_are_the_only_parameters_a_plain_net_lacks():
    resnet, plain = archzoo.create_model("resnet18"), archzoo.create_model("plain18")
    projections = sum(p.numel() for k, p in resnet.named_parameters() if ".shortcut." in k)
    assert projections == (64 * 128 + 2 * 128) + (128 * 256 + 2 * 256) + (256 * 512 + 2 * 512)   # 1x1 conv + BN
    assert n_params(resnet) - n_params(plain) == projections
    # resnet20 with option B instead of A: the 272,474 parameters that B-shortcut reimplementations report
    assert n_params(archzoo.create_model("resnet20", shortcut="B")) == 269_722 + (16 * 32 + 64) + (32 * 64 + 128)


def test_option_a_shortcut_is_the_subsampled_input_with_zero_channels_appended():
    x = torch.randn(2, 16, 9, 9, dtype=torch.float64)                    # odd size: 9 -> 5, like a 3x3/2 conv
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    expected = torch.cat([x[:, :, 0::2, 0::2], torch.zeros(2, 16, 5, 5, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(shortcut(x), expected, rtol=0, atol=0)
    assert n_params(shortcut) == 0 and not list(shortcut.buffers())
    assert BasicBlock(16, 32, stride=2, shortcut="A").conv1(x.float()).shape[-2:] == (5, 5)


@pytest.mark.parametrize("depth", [20, 56])
def test_plain_twin_has_exactly_the_residual_nets_parameters(depth):
    resnet, plain = archzoo.create_model(f"resnet{depth}"), archzoo.create_model(f"plain{depth}")
    assert {k: v.shape for k, v in resnet.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    plain.load_state_dict(resnet.state_dict())                           # strict: the same weights fit both


def test_blocks_differ_only_by_the_shortcut_eq1():
    torch.manual_seed(0)
    residual, plain = BasicBlock(8, 8).double().eval(), BasicBlock(8, 8, residual=False).double().eval()
    for bn in (residual.bn1, residual.bn2):                              # non-trivial BN statistics and affine
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2), bn.bias.data.uniform_(-1, 1)
    plain.load_state_dict(residual.state_dict())
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    f = residual.bn2(residual.conv2(F.relu(residual.bn1(residual.conv1(x)))))     # F(x, {W_1, W_2})
    torch.testing.assert_close(residual(x), F.relu(f + x))                          # Eq. 1, ReLU after the addition
    torch.testing.assert_close(plain(x), F.relu(f))


def test_with_zero_residual_branches_the_resnet_is_its_shortcut_path_and_the_plain_net_outputs_zero():
    # last BN gamma = 0 (and beta = 0 at init) makes every F(x) = 0: a residual block passes relu(W_s x) = W_s x
    # on (non-negative) post-ReLU inputs, a plain block outputs relu(0) = 0.
    torch.manual_seed(0)
    resnet = CifarResNet(20, zero_init_residual=True).double().eval()
    plain = CifarResNet(20, residual=False).double().eval()
    plain.load_state_dict(resnet.state_dict())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    s = resnet.stem(x)                                                   # (2, 16, 32, 32), >= 0
    expected = torch.cat([s[:, :, ::4, ::4], s.new_zeros(2, 48, 8, 8)], dim=1)    # two option-A subsamplings
    torch.testing.assert_close(resnet.forward_features(x), expected, rtol=0, atol=0)
    assert torch.count_nonzero(plain.forward_features(x)) == 0
    torch.testing.assert_close(plain(x), plain.fc.bias.expand(2, 10), rtol=0, atol=0)


def test_bottleneck_strides_on_the_3x3_conv_v1_5_or_on_the_first_1x1_as_in_the_paper():
    v15, v1 = Bottleneck(256, 128, stride=2), Bottleneck(256, 128, stride=2, stride_in_1x1=True)
    assert (v15.conv1.stride, v15.conv2.stride) == ((1, 1), (2, 2))
    assert (v1.conv1.stride, v1.conv2.stride) == ((2, 2), (1, 1))
    assert n_params(v15) == n_params(v1)
    x = torch.randn(1, 256, 14, 14)
    assert v15(x).shape == v1(x).shape == (1, 512, 7, 7)


def test_imagenet_resnet_downsamples_by_32_as_in_table1():
    model = archzoo.create_model("resnet50").eval()
    assert model.default_input_size == (3, 224, 224)
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, 2048, 2, 2) and model.forward_head(features).shape == (1, 1000)


def test_bad_depth_raises_a_value_error():
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth=21)


def test_unknown_model_name_suggests_the_closest_preset():
    with pytest.raises(ValueError, match="resnet50"):
        archzoo.create_model("resent50")


def test_every_preset_is_registered_under_the_paper():
    presets = {f"resnet{d}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)}
    presets |= {f"plain{d}" for d in (18, 34, 20, 32, 44, 56, 110)}
    assert presets <= set(archzoo.list_models())
    assert set(archzoo.get_paper("resnet").models) == presets


def test_quick_degradation_claim_measures_the_three_nets(quick_claim):
    record = quick_claim("resnet", "degradation")                        # run once (tests/test_claims_quick.py)
    assert set(record["metrics"]["train_error"]) >= {"plain_shallow", "plain_deep", "res_deep"}


# ----------------------------------------------------------------------------- reference: transformers' ResNet
# (`reference.py` builds it at a preset's configuration for `archzoo bench models`; that transformers' ResNet equals
# ours after a weight copy is tested with the builders, tests/core.)


@pytest.mark.reference
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_transformers_resnet_at_our_presets_configuration_has_our_parameter_count(name):
    transformers = pytest.importorskip("transformers")
    from archzoo.papers.resnet.reference import hf_resnet_config

    with torch.device("meta"):
        ours = archzoo.create_model(name, num_classes=7)
        theirs = transformers.ResNetForImageClassification(hf_resnet_config(ours))
    assert n_params(theirs) == n_params(ours)


@pytest.mark.reference
def test_transformers_config_puts_the_stride_where_ours_is_and_rejects_option_a_and_plain_nets():
    pytest.importorskip("transformers")
    from archzoo.papers.resnet.reference import hf_resnet_config

    with torch.device("meta"):
        assert not hf_resnet_config(archzoo.create_model("resnet50")).downsample_in_bottleneck        # v1.5
        assert hf_resnet_config(archzoo.create_model("resnet50", stride_in_1x1=True)).downsample_in_bottleneck
        for name, kw in (("resnet34", {"shortcut": "A"}), ("plain18", {})):
            with pytest.raises(ValueError, match="option B"):
                hf_resnet_config(archzoo.create_model(name, **kw))
