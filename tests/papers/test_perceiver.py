"""Perceiver (Jaegle et al. 2021, arXiv:2103.03206): Fourier features, cross-attend, permutation invariance, weight
sharing, the ImageNet preset's parameter count, generated modalities, interfaces and the quick claims.

No numeric reference test against transformers' PerceiverModel: its ImageNet model uses a conv/learned
preprocessor and a different cross-attention layout (Perceiver IO), so no clean weight mapping exists."""

import math

import pytest
import torch

import archzoo
from archzoo.engine.train import train
from archzoo.papers.perceiver import (
    CrossAttend,
    FourierPositionEncoding,
    Perceiver,
    fourier_features,
    frequency_bands,
    grid_positions,
    point_clouds,
    series,
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny(**kw) -> Perceiver:
    torch.manual_seed(0)
    cfg = dict(in_chans=2, num_classes=3, input_axis=2, input_size=(4, 5), num_bands=3, max_freq=8, num_latents=4,
               latent_dim=8, repeats=3, self_per_cross_attn=1, latent_heads=2)
    return Perceiver(**{**cfg, **kw}).double().eval()


def test_frequency_bands_are_equally_spaced_from_1_to_half_the_max_frequency():
    f = frequency_bands(5, 224)
    torch.testing.assert_close(f, torch.tensor([1.0, 28.75, 56.5, 84.25, 112.0], dtype=torch.float64))
    g = frequency_bands(3, 200, spacing="log")
    torch.testing.assert_close(g, torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64))


def test_fourier_features_match_the_formula_of_sec_3_2_at_known_positions():
    pos = torch.tensor([[0.0, 1.0], [-0.5, 0.25]], dtype=torch.float64)              # two 2D positions
    feats = fourier_features(pos, num_bands=3, max_freq=10)                           # f = 1, 3, 5
    assert feats.shape == (2, 2 * (2 * 3 + 1))
    for i in range(2):
        for d in range(2):
            x = pos[i, d].item()
            expected = [math.sin(f * math.pi * x) for f in (1, 3, 5)] + [math.cos(f * math.pi * x) for f in (1, 3, 5)]
            torch.testing.assert_close(feats[i, 7 * d: 7 * d + 7], torch.tensor(expected + [x], dtype=torch.float64))
    assert feats[0, :3].abs().max() < 1e-12 and torch.equal(feats[0, 3:6], torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("spatial", [(7,), (3, 4), (2, 3, 4)])
def test_position_encoding_appends_d_times_2k_plus_1_channels_in_row_major_order(spatial):
    d, k, c = len(spatial), 4, 2
    x = torch.randn(2, c, *spatial, dtype=torch.float64)
    out = FourierPositionEncoding(d, k, 16)(x)
    m = math.prod(spatial)
    assert out.shape == (2, m, c + d * (2 * k + 1))
    torch.testing.assert_close(out[:, :, :c], x.reshape(2, c, m).transpose(1, 2))          # the input's own channels
    raw = out[0, :, c + 2 * k::2 * k + 1]                                                   # x_d of every position
    torch.testing.assert_close(raw, grid_positions(spatial, dtype=torch.float64).reshape(m, d))
    assert raw.min() == -1 and raw.max() == 1


def test_cross_attend_computes_softmax_attention_of_normed_latents_over_normed_inputs():
    torch.manual_seed(0)
    ca = CrossAttend(latent_dim=6, input_dim=5, heads=1, mlp_ratio=1.0).double()
    z, x = torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(2, 7, 5, dtype=torch.float64)
    a = ca.attn
    q = a.to_q(ca.norm_latents(z))
    k, v = a.to_k(ca.norm_inputs(x)), a.to_v(ca.norm_inputs(x))
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(6), dim=-1)                  # (B, N, M)
    z1 = z + a.to_out(weights @ v)
    torch.testing.assert_close(ca(z, x), z1 + ca.mlp(ca.norm_mlp(z1)))


def test_output_is_invariant_to_permuting_the_byte_array_with_its_position_features():
    model = tiny()
    img = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    array = model.byte_array(img)                                                           # (2, 20, 2 + 2 * 7)
    perm = torch.randperm(20)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_array(array[:, perm]), model.forward_array(array))
        scrambled = img.reshape(2, 2, 20)[:, :, perm].reshape(2, 2, 4, 5)                  # pixels moved, features not
        assert not torch.allclose(model(scrambled), model(img))


def test_weight_sharing_reuses_one_tower_and_all_cross_attends_but_the_first():
    model = tiny(repeats=5)
    cross = [model.layer(i)[0] for i in range(5)]
    towers = [model.layer(i)[1] for i in range(5)]
    assert cross[0] is not cross[1] and all(c is cross[1] for c in cross[2:])
    assert all(t is towers[0] for t in towers)
    assert n_params(tiny(repeats=2)) == n_params(tiny(repeats=8)) > n_params(tiny(repeats=1))
    unshared = tiny(repeats=4, share_weights=False)
    cross_attend, tower = n_params(model.cross_attends[1]), n_params(model.towers[0])
    assert n_params(unshared) == n_params(tiny(repeats=4)) + 2 * cross_attend + 3 * tower   # 4 + 4 against 2 + 1
    assert len({id(unshared.layer(i)[1]) for i in range(4)}) == 4


def perceiver_parameter_count(c=261, d=1024, n=512, tower=6, classes=1000) -> int:
    """By hand: latents; 2 cross-attends (2 LN on latents + LN on inputs, W^Q, W^K, W^V, W^O + bias, MLP D-D-D);
    one tower of `tower` blocks (2 LN, 3 D^2, W^O + bias, MLP); final LN and head."""
    mlp = 2 * (d * d + d)
    cross = 2 * d + 2 * c + d * d + 2 * c * d + d * d + d + 2 * d + mlp
    block = 2 * d + 3 * d * d + d * d + d + 2 * d + mlp
    return n * d + 2 * cross + tower * block + 2 * d + d * classes + classes


def test_imagenet_preset_has_the_paper_configuration_and_exact_parameter_count():
    with torch.device("meta"):
        model = archzoo.create_model("perceiver_imagenet")
    assert (model.num_latents, model.latent_dim, model.repeats, model.input_dim) == (512, 1024, 8, 3 + 2 * 129)
    assert len(model.towers[0].blocks) == 6 and model.towers[0].blocks[0].attn.heads == 8
    assert model.cross_attends[0].attn.heads == 1 and model.position.max_freq == 224
    assert n_params(model) == 48_816_124 == perceiver_parameter_count()
    assert archzoo.get_paper("perceiver").models == ["perceiver_imagenet"]


def test_overrides_change_classes_and_channels():
    with torch.device("meta"):
        model = archzoo.create_model("perceiver_imagenet", num_classes=10, in_chans=1, img_size=28)
    assert model.default_input_size == (1, 28, 28)
    assert n_params(model) == perceiver_parameter_count(c=259, classes=10)


def test_bad_inputs_raise_value_error_naming_the_shapes():
    model = tiny()
    with pytest.raises(ValueError, match="C=2"):
        model(torch.randn(2, 3, 4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="expected shape"):
        model(torch.randn(2, 2, 20, dtype=torch.float64))
    with pytest.raises(ValueError, match="byte array"):
        model.forward_array(torch.randn(2, 20, 5, dtype=torch.float64))
    with pytest.raises(ValueError):
        Perceiver(input_axis=2, input_size=(8,))


def test_point_cloud_perceiver_takes_byte_arrays_and_different_sizes():
    model = tiny(in_chans=3 * 7, input_axis=0, input_size=(16,))
    for m in (16, 40):
        feats = fourier_features(torch.rand(2, m, 3, dtype=torch.float64) * 2 - 1, 3, 8)
        assert model(feats).shape == (2, 3)


def test_generated_modalities_are_balanced_and_shaped():
    s, pc = series(12, length=32), point_clouds(10, points=20)
    assert s.tensors[0].shape == (12, 1, 32) and torch.bincount(s.tensors[1]).tolist() == [2] * 6
    assert pc.tensors[0].shape == (10, 20, 3) and torch.bincount(pc.tensors[1]).tolist() == [2] * 5
    assert pc.tensors[0].abs().max() <= 1
    assert torch.equal(series(4, 16, seed=3).tensors[0], series(4, 16, seed=3).tensors[0])


def test_loss_falls_on_a_fixed_batch():
    model = tiny().float().train()
    x, y = torch.randn(8, 2, 4, 5), torch.arange(8) % 3
    data = torch.utils.data.TensorDataset(x, y)
    result = train(model, data, steps=60, batch_size=8, lr=5e-3, schedule="constant", progress=False)
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]


def test_save_and_load_round_trip_and_reset_classifier(tmp_path):
    model = archzoo.create_model("perceiver_imagenet", in_chans=1, input_size=[6, 6], num_classes=4, num_bands=2,
                                 num_latents=4, latent_dim=16, repeats=2, self_per_cross_attn=1, latent_heads=2).eval()
    model.save_pretrained(tmp_path)
    loaded = archzoo.from_pretrained(tmp_path).eval()
    x = torch.rand(2, 1, 6, 6)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    model.reset_classifier(0)
    assert model(x).shape == (2, 16)


# ----------------------------------------------------------------------------- the permutation claim


def test_constant_position_perceiver_sees_a_set_of_pixels_and_keeps_their_intensities():
    from archzoo.papers.perceiver.claims import ConstantPosition

    model = tiny()
    blind = ConstantPosition(model)
    img = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    scrambled = img.reshape(2, 2, 20)[:, :, torch.randperm(20)].reshape(2, 2, 4, 5)      # pixels moved, no features
    with torch.no_grad():
        torch.testing.assert_close(blind(scrambled), blind(img))         # position-free: the same set of pixels
        assert not torch.allclose(model(scrambled), model(img))          # with position features it is not
        assert not torch.allclose(blind(img), blind(img.flip(0)))        # the intensities still reach the latents


def test_quick_permutation_claim_passed_follows_its_criterion(quick_claim):
    record = quick_claim("perceiver", "permutation")                     # run once (tests/test_claims_quick.py)
    m = record["metrics"]
    acc, effects, checks = m["test_accuracy"], m["effects"], m["checks"]
    assert effects["perceiver_permuted_minus_original"] == pytest.approx(acc["perceiver/permuted"]
                                                                         - acc["perceiver/original"])
    assert effects["convnet_drop"] == pytest.approx(acc["convnet/original"] - acc["convnet/permuted"])
    assert checks == {"perceiver_learned": acc["perceiver/original"] >= 70.0,
                      "perceiver_invariant": abs(effects["perceiver_permuted_minus_original"]) <= 1.0,
                      "perceiver_uses_position": effects["perceiver_minus_constant_position"] >= 5.0,
                      "convnet_drops": effects["convnet_drop"] >= 5.0}
    assert record["passed"] == all(checks.values())
    for run, val in m["lr_sweep_val_accuracy"].items():                  # each run's lr is its best on validation
        assert val[str(m["lr"][run])] == max(val.values())
    assert m["lr"]["perceiver/permuted"] == m["lr"]["perceiver/original"]


def test_step_flops_counts_a_linear_layers_forward_and_both_backward_products():
    from archzoo.papers.perceiver.claims import step_flops

    layer = torch.nn.Linear(8, 5, bias=False)
    x = torch.randn(3, 8, requires_grad=True)
    assert step_flops(layer, x) == 3 * (2 * 3 * 8 * 5)      # y = x W^T, dL/dx = g W, dL/dW = g^T x


def test_linear_cost_records_flops_and_load_and_needs_a_quiet_machine(quick_claim):
    record = quick_claim("perceiver", "linear_cost")
    m = record["metrics"]
    assert set(m["flops"]) == {"Perceiver", "self-attention"} and m["quiet"] is True
    assert m["slopes"]["self-attention"]["flops"] > m["slopes"]["Perceiver"]["flops"]
