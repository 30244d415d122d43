"""BiT (Kolesnikov et al. 2019, arXiv:1912.11370): the released weight standardization, ResNet-v2 with GN + WS, zero
head, the HyperRule, the claim, and the logits of Hugging Face's BiT after copying its weights."""

import re
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import archzoo
from archzoo.papers.bit import (
    HyperRule,
    PreActBottleneck,
    ResNetV2,
    StdConv2d,
    fine_tune,
    hyperrule,
    mixup_cross_entropy,
    preprocess_test,
    preprocess_train,
)
from archzoo.papers.group_norm import GroupNorm
from archzoo.papers.weight_standardization import standardize_weight

PRESETS = {"bit_r50x1": 25_549_352, "bit_r50x3": 217_319_080, "bit_r101x1": 44_541_480,
           "bit_r101x3": 387_934_888, "bit_r152x2": 236_335_208, "bit_r152x4": 936_533_224}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(name: str, **kw) -> torch.nn.Module:
    with torch.device("meta"):                       # shapes only: R152x4's 936M parameters cost no memory
        return archzoo.create_model(name, **kw)


def tiny(**kw) -> ResNetV2:
    return ResNetV2((1, 2), in_chans=1, num_classes=3, stem_width=8, widths=(8, 16), num_groups=4, **kw)


def released_ws(w: torch.Tensor, eps: float) -> torch.Tensor:
    """The release's standardization transcribed (big_transfer bit_pytorch/models.py, StdConv2d.forward)."""
    v, m = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
    return (w - m) / torch.sqrt(v + eps)


# ----------------------------------------------------------------------------- the released weight standardization


def test_std_conv_is_conv2d_with_the_releases_standardized_weight_and_eps():
    torch.manual_seed(0)
    conv = StdConv2d(3, 5, 3, stride=2, padding=1, bias=True).double()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    assert conv.eps == 1e-10
    expected = F.conv2d(x, released_ws(conv.weight, 1e-10), conv.bias, stride=2, padding=1)
    torch.testing.assert_close(conv(x), expected)
    torch.testing.assert_close(conv.reference_forward(x), expected)


def test_released_form_is_the_ws_papers_times_sqrt_n_over_n_minus_1():
    # biased variance vs the WS paper's unbiased std: per row, a factor sqrt(n / (n - 1)) with n the fan-in (eps 0)
    conv = StdConv2d(4, 6, 3, eps=0.0).double()
    n = 4 * 3 * 3
    torch.testing.assert_close(conv.standardized_weight(), standardize_weight(conv.weight, 0.0) * (n / (n - 1)) ** 0.5)
    rows = conv.standardized_weight().flatten(1)
    torch.testing.assert_close(rows.mean(1), torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(rows.var(1, correction=0), torch.ones(6, dtype=torch.float64))


def test_std_conv_rejects_wrong_input_channels():
    with pytest.raises(ValueError, match=r"expected shape \(B, C=3, H, W\)"):
        StdConv2d(3, 4, 1)(torch.randn(2, 4, 5, 5))


# ----------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("name, count", PRESETS.items())
def test_presets_have_the_parameter_counts_that_follow_from_the_papers_widths(name, count):
    assert n_params(on_meta(name)) == count


def test_r50x1_and_r152x4_match_the_published_sizes():
    assert f"{PRESETS['bit_r50x1'] / 1e6:.1f}" == "25.5"            # BiT-M R50x1, 1000 classes: 25.5M
    assert int(PRESETS["bit_r152x4"] / 1e6) == 936                   # BiT-L R152x4: 936M


def test_r50x1_has_resnet50s_convolutions_and_per_channel_gn_affines_in_pre_activation_places():
    bit, resnet = on_meta("bit_r50x1"), on_meta("resnet50")
    conv = [tuple(m.weight.shape) for m in bit.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted(conv) == sorted(tuple(m.weight.shape) for m in resnet.modules() if isinstance(m, torch.nn.Conv2d))
    # GN before each conv of a unit normalises the unit's input, mid and mid channels; one more GN before the head
    expected_norm = sum(2 * (b.conv1.in_channels + 2 * b.conv1.out_channels) for b in bit.modules()
                        if isinstance(b, PreActBottleneck)) + 2 * 2048
    assert n_params(bit) == sum(np.prod(s) for s in conv) + expected_norm + 2048 * 1000 + 1000


def test_every_convolution_is_weight_standardized_and_every_norm_is_group_norm_with_32_groups():
    model = on_meta("bit_r101x3")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, (GroupNorm, torch.nn.modules.batchnorm._NormBase,
                                                          torch.nn.GroupNorm))]
    assert len(convs) == 1 + 3 * 33 + 4 and all(isinstance(m, StdConv2d) for m in convs)
    assert len(norms) == 3 * 33 + 1 and all(isinstance(m, GroupNorm) and m.num_groups == 32 for m in norms)


def test_width_factor_multiplies_every_width():
    model = on_meta("bit_r50x3")
    assert model.stem[0].out_channels == 192 and model.num_features == 3 * 2048
    assert [s[0].conv2.out_channels for s in model.stages] == [192, 384, 768, 1536]


def test_the_net_is_invariant_to_rescaling_conv_weights_because_ws_sits_in_every_conv():
    # the last 1x1 of each unit, the projections and the root feed the residual stream with no GN right after:
    # only WS makes their scale irrelevant
    torch.manual_seed(0)
    model = tiny().double().eval()
    torch.nn.init.normal_(model.fc.weight)
    x = torch.randn(2, 1, 32, 32, dtype=torch.float64)
    before = model(x)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, StdConv2d):
                m.weight.mul_(7.0).add_(0.3)                          # a positive affine map of every weight
    torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)


def test_pre_activation_unit_is_x_plus_f_with_gn_relu_before_each_conv_and_the_projection_on_pre():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 9, 9, dtype=torch.float64)

    def gn_relu(norm, t):
        norm.weight.data.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
        return F.relu(F.group_norm(t, norm.num_groups, norm.weight, norm.bias, norm.eps))

    def ws(conv, t):
        return F.conv2d(t, released_ws(conv.weight, conv.eps), stride=conv.stride, padding=conv.padding)

    for in_ch, ch, stride in ((16, 8, 2), (16, 4, 1)):               # projection (shape changes), identity
        unit = PreActBottleneck(in_ch, ch, stride, num_groups=4).double()
        pre = gn_relu(unit.norm1, x)
        f = ws(unit.conv1, pre)
        f = ws(unit.conv2, gn_relu(unit.norm2, f))
        f = ws(unit.conv3, gn_relu(unit.norm3, f))
        shortcut = x if unit.shortcut is None else ws(unit.shortcut, pre)
        assert (unit.shortcut is None) == (stride == 1 and in_ch == 4 * ch)
        torch.testing.assert_close(unit(x), f + shortcut)             # no ReLU after the sum
        assert unit.conv2.stride == (stride, stride) and unit.conv1.stride == (1, 1)


def test_root_is_a_7x7_stride_2_ws_conv_then_zero_padding_and_a_3x3_stride_2_max_pool():
    torch.manual_seed(0)
    model = tiny().double()
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64)
    conv = model.stem[0]
    assert conv.kernel_size == (7, 7) and conv.stride == (2, 2) and isinstance(conv, StdConv2d)
    expected = F.max_pool2d(F.pad(conv(x), (1, 1, 1, 1), value=0.0), 3, stride=2)     # (1, 8, 8, 8)
    torch.testing.assert_close(model.stem(x), expected)
    assert expected.shape == (1, 8, 8, 8)


def test_features_end_with_gn_and_relu_and_the_net_downsamples_by_32():
    model = tiny().double()
    x = torch.randn(2, 1, 64, 64, dtype=torch.float64)
    features = model.forward_features(x)
    assert features.shape == (2, 64, 8, 8)                            # 64 -> 16 (root) -> 16 -> 8 (2 stages)
    torch.testing.assert_close(features, F.relu(model.norm(model.stages(model.stem(x)))))
    big = on_meta("bit_r50x1")
    assert big.default_input_size == (3, 224, 224)
    assert big.forward_features(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 2048, 7, 7)


def test_head_is_zero_at_init_so_logits_are_zero_and_only_the_head_gets_a_gradient():
    torch.manual_seed(0)
    model = tiny()
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 0])
    logits = model(x)
    assert torch.count_nonzero(logits) == 0
    F.cross_entropy(logits, y).backward()
    assert model.fc.weight.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        if not name.startswith("fc."):
            assert torch.count_nonzero(p.grad) == 0, name            # zero head -> zero gradient to the features
    model.reset_classifier(7)                                          # every transfer starts from a zero head
    assert model.num_classes == 7 and torch.count_nonzero(model(x)) == 0 and model(x).shape == (4, 7)


# ----------------------------------------------------------------------------- the HyperRule


@pytest.mark.parametrize("size, image, steps, decays, resize, crop, alpha", [
    (1, 32, 500, (150, 300, 450), 160, 128, 0.0),                    # small task, small images (CIFAR-like)
    (19_999, 95, 500, (150, 300, 450), 160, 128, 0.0),
    (20_000, 96, 10_000, (3000, 6000, 9000), 448, 384, 0.1),         # medium task starts at 20k; 96x96 is not small
    (499_999, (300, 400), 10_000, (3000, 6000, 9000), 448, 384, 0.1),
    (500_000, 224, 20_000, (6000, 12_000, 18_000), 448, 384, 0.1),   # large task
    (1_281_167, 224, 20_000, (6000, 12_000, 18_000), 448, 384, 0.1),  # ILSVRC-2012
])
def test_hyperrule_table(size, image, steps, decays, resize, crop, alpha):
    rule = hyperrule(size, image)
    assert (rule.steps, rule.decay_steps, rule.resize, rule.crop, rule.mixup_alpha) == (steps, decays, resize,
                                                                                          crop, alpha)
    assert (rule.lr, rule.batch_size, rule.momentum, rule.flip) == (0.003, 512, 0.9, True)


def test_learning_rate_drops_tenfold_at_30_60_and_90_percent():
    rule = hyperrule(1000, 32)
    lrs = [rule.lr_at(t) for t in (0, 149, 150, 299, 300, 449, 450, 499)]
    np.testing.assert_allclose(lrs, [3e-3, 3e-3, 3e-4, 3e-4, 3e-5, 3e-5, 3e-6, 3e-6])


def test_scaled_rule_keeps_the_decay_fractions_and_the_resize_to_crop_ratio():
    rule = hyperrule(100, 8, flip=False).scaled(step_scale=0.2, crop=28, batch_size=16)
    assert (rule.steps, rule.decay_steps, rule.resize, rule.crop, rule.batch_size) == (100, (30, 60, 90), 35, 28, 16)
    assert (rule.lr, rule.momentum, rule.mixup_alpha, rule.flip) == (0.003, 0.9, 0.0, False)
    assert rule.scaled(lr=0.015).lr == 0.015


def test_omitting_the_crop_resizes_straight_to_the_crop_size():
    rule = hyperrule(100, 8, crop=False)
    assert (rule.resize, rule.crop) == (128, 128) and rule.scaled(crop=28).resize == 28
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(preprocess_train(x, replace(rule.scaled(crop=28), flip=False)),
                               preprocess_test(x, rule.scaled(crop=28)))


def test_training_crops_are_windows_of_the_resized_image_and_test_images_are_only_resized():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 8, 8)
    rule = HyperRule(steps=1, resize=12, crop=10, mixup_alpha=0.0, flip=False)
    resized = F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False)
    crops = preprocess_train(x, rule)
    assert crops.shape == (3, 1, 10, 10)
    for img, crop in zip(resized, crops):
        windows = img.unfold(1, 10, 1).unfold(2, 10, 1)                # (1, 3, 3, 10, 10): every 10x10 window
        assert any(torch.equal(windows[:, i, j], crop) for i in range(3) for j in range(3))
    torch.testing.assert_close(preprocess_test(x, rule), F.interpolate(x, size=(10, 10), mode="bilinear"))
    flipping = HyperRule(steps=1, resize=8, crop=8, mixup_alpha=0.0, flip=True)
    out = preprocess_train(x.repeat(20, 1, 1, 1), flipping)            # no crop freedom: each is x or its mirror
    mirrored = [torch.equal(o, x[i % 3].flip(-1)) for i, o in enumerate(out)]
    assert all(m or torch.equal(o, x[i % 3]) for i, (o, m) in enumerate(zip(out, mirrored))) and 0 < sum(mirrored) < 60


def test_mixup_with_alpha_zero_is_cross_entropy_and_mixing_identical_examples_changes_nothing():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 1, 0])
    torch.testing.assert_close(mixup_cross_entropy(model, x, y, 0.0), F.cross_entropy(model(x), y))
    same_x, same_y = x[:1].expand(5, -1, -1, -1), torch.full((5,), 2)
    torch.testing.assert_close(mixup_cross_entropy(model, same_x, same_y, 0.1), F.cross_entropy(model(same_x), same_y))
    assert not torch.allclose(mixup_cross_entropy(model, x, y, 1.0), F.cross_entropy(model(x), y))


def test_fine_tune_follows_the_schedule_and_fits_a_few_shot_task():
    torch.manual_seed(0)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    x = 0.1 * torch.rand(6, 1, 8, 8)
    x[y == 0, :, :4] += 1                                              # top, bottom or left half lit
    x[y == 1, :, 4:] += 1
    x[y == 2, :, :, :4] += 1
    task = TensorDataset(x, y)
    rule = HyperRule(steps=30, resize=10, crop=8, mixup_alpha=0.0, lr=0.1, batch_size=6, flip=False)
    model = tiny()
    history = fine_tune(model, task, rule, seed=0)
    assert [h["lr"] for h in history] == [rule.lr_at(t) for t in range(30)]
    assert {round(h["lr"], 8) for h in history} == {0.1, 0.01, 0.001, 0.0001}
    assert history[0]["loss"] == pytest.approx(np.log(3))               # zero head: uniform predictions
    assert np.mean([h["loss"] for h in history[-3:]]) < 0.5 * history[0]["loss"]


# ----------------------------------------------------------------------------- interfaces


def test_bad_configurations_raise_value_errors():
    with pytest.raises(ValueError, match="dataset_size"):
        hyperrule(0, 32)
    with pytest.raises(ValueError, match="crop"):
        HyperRule(steps=10, resize=8, crop=10, mixup_alpha=0.0)
    with pytest.raises(ValueError, match="width_factor"):
        ResNetV2((3, 4), widths=(64, 128, 256))
    with pytest.raises(ValueError, match="divisible"):
        ResNetV2((1,), stem_width=8, widths=(8,))                     # 8 channels cannot form 32 groups


def test_every_preset_is_registered_under_the_paper():
    assert set(archzoo.get_paper("bit").models) == set(PRESETS)
    assert "PreActBottleneck" in archzoo.get_paper("bit").layers


def test_quick_few_shot_transfer_metrics_follow_the_criterion(quick_claim):
    record = quick_claim("bit", "few_shot_transfer")                     # run once (tests/test_claims_quick.py)
    m, lrs = record["metrics"], record["config"]["lrs"]
    assert set(m["transfer_accuracy"]) == set(m["scratch_accuracy"]) == {"1"}
    assert record["passed"] == (m["gain_points"]["1"] >= 10.0)
    for init in ("transfer", "scratch"):                                 # each arm at its best validation rate
        val = m["lr_sweep_val_accuracy"][init]["1"]
        assert m["best_lr"][init]["1"] in lrs and val[str(m["best_lr"][init]["1"])] == max(val.values())
        assert len(m[f"{init}_accuracy_per_seed"]["1"]) == record["config"]["seeds"]


# ----------------------------------------------------------------------------- reference: transformers' BiT


def our_key(hf_key: str) -> str:
    """A key of transformers' BitForImageClassification state dict -> ours."""
    for pattern, ours in ((r"^bit\.embedder\.convolution\.", "stem.0."),
                          (r"^bit\.encoder\.stages\.(\d+)\.layers\.(\d+)\.downsample\.conv\.",
                           r"stages.\1.\2.shortcut."),
                          (r"^bit\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.\2."),
                          (r"^bit\.norm\.", "norm."), (r"^classifier\.1\.", "fc.")):
        key, n = re.subn(pattern, ours, hf_key)
        if n:
            return key
    raise KeyError(hf_key)


@pytest.mark.reference
def test_logits_match_transformers_bit_r50x1_after_copying_its_weights():
    pytest.importorskip("transformers")
    from archzoo.papers.bit.reference import hf_bit

    torch.manual_seed(0)
    hf = hf_bit("bit_r50x1", num_classes=5)                            # pre-activation R50x1, random init, eval
    with torch.no_grad():                                              # GN affines away from 1 and 0
        for name, p in hf.named_parameters():
            if ".norm" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.5, 0.5)
    ours = archzoo.create_model("bit_r50x1", num_classes=5).eval()
    ours.load_state_dict({our_key(k): v for k, v in hf.state_dict().items()})     # strict: one to one
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = hf(x).logits
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=1e-4)
        for m in ours.modules():                                       # with the WS paper's standardization
            if isinstance(m, StdConv2d):
                m.standardized_weight = lambda m=m: standardize_weight(m.weight)
        assert (ours(x) - expected).abs().max() > 1e-3                 # ... released weights would not reproduce
