"""Axial-DeepLab (Wang et al. 2020): position-sensitive axial-attention (Eq. 4), Axial-ResNets, panoptic head and
grouping, the claims. Shape scenes and panoptic quality are tested in tests/data and tests/engine."""

import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.data.scenes import THING_IDS, make_scenes
from archzoo.engine.metrics import panoptic_quality
from archzoo.papers.axial_deeplab import (
    AxialAttention,
    AxialDeepLab,
    find_centers,
    panoptic_inference,
    panoptic_targets,
    relative_index,
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, count, paper", [
    ("axial_resnet26_s", 5_944_936, "5.9"), ("axial_resnet50_s", 11_586_216, None),
    ("axial_resnet50_m", 25_179_400, None), ("axial_resnet50_l", 43_973_480, None),
    ("axial_resnet_tiny", 14_682, None), ("axial_deeplab_tiny", 67_032, None),
])
def test_presets_have_their_parameter_counts(name, count, paper):
    with torch.device("meta"):
        n = n_params(archzoo.create_model(name))
    assert n == count
    if paper is not None:
        assert f"{n / 1e6:.1f}" == paper                # the authors' model zoo: Axial-ResNet-26-S, 5.9M


def naive_axial(layer: AxialAttention, x: torch.Tensor) -> torch.Tensor:
    """Eq. 4 along the height axis, one column, one head, one query at a time (norm=False layer)."""
    b, _, h, w = x.shape
    g, dqk, dv, m = layer.heads, layer.dim_qk, layer.dim_v, layer.span
    y = torch.zeros(b, layer.dim_out, h, w, dtype=x.dtype)
    for bi in range(b):
        for col in range(w):
            qkv = layer.to_qkv.weight[:, :, 0] @ x[bi, :, :, col]          # (2 C_out, H)
            for hd in range(g):
                part = qkv[hd * 2 * dv:(hd + 1) * 2 * dv]
                q, k, v = part[:dqk], part[dqk:2 * dqk], part[2 * dqk:]
                for o in range(h):
                    logits = torch.stack([q[:, o] @ k[:, p] + q[:, o] @ layer.r_q[:, p - o + m - 1]
                                          + k[:, p] @ layer.r_k[:, p - o + m - 1] for p in range(h)])
                    a = logits.softmax(0)
                    y[bi, hd * dv:(hd + 1) * dv, o, col] = sum(a[p] * (v[:, p] + layer.r_v[:, p - o + m - 1])
                                                               for p in range(h))
    return y


def test_height_attention_is_equation_4_computed_column_by_column():
    torch.manual_seed(0)
    layer = AxialAttention(6, 8, heads=2, span=7, axis="height", norm=False).double()
    x = torch.randn(2, 6, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(x), naive_axial(layer, x))


def test_width_attention_is_height_attention_on_the_transposed_map():
    torch.manual_seed(0)
    height = AxialAttention(6, 8, heads=2, span=6, axis="height").double().eval()
    width = AxialAttention(6, 8, heads=2, span=6, axis="width").double().eval()
    width.load_state_dict(height.state_dict())
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(width(x), height(x.transpose(2, 3)).transpose(2, 3))


def test_position_free_axial_attention_is_2d_attention_masked_to_the_column():
    torch.manual_seed(0)
    layer = AxialAttention(6, 8, heads=2, span=5, axis="height", position="none", norm=False).double()
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    tokens = x.flatten(2)                                                    # (B, C, H W), position = (i, j)
    qkv = torch.einsum("oc,bcn->bon", layer.to_qkv.weight[:, :, 0], tokens).view(2, 2, 8, 20)   # (B, G, 2 d_v, n)
    q, k, v = qkv[:, :, :2], qkv[:, :, 2:4], qkv[:, :, 4:]
    col = torch.arange(20) % 4
    same_column = col[:, None] == col[None, :]                               # the height axis: keys in o's column
    y = F.scaled_dot_product_attention(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3),
                                       attn_mask=same_column, scale=1.0)     # (B, G, n, d_v), no 1/sqrt(d) (Eq. 1)
    torch.testing.assert_close(layer(x), y.transpose(2, 3).reshape(2, 8, 5, 4))


def test_relative_index_holds_the_offset_p_minus_o():
    idx = relative_index(4, 6)
    for o in range(4):
        for p in range(4):
            assert idx[o, p] == p - o + 5
    table = torch.arange(11.0)[None]                                          # r_{p-o} = p - o + 5
    assert torch.equal(table[:, idx][0], idx.float())                        # Toeplitz: constant along diagonals
    assert idx.min() >= 0 and idx.max() <= 2 * 6 - 2
    with pytest.raises(ValueError, match="span"):
        relative_index(7, 6)


def test_position_terms_break_the_permutation_equivariance_of_plain_attention():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 6, 3, dtype=torch.float64)
    perm = torch.randperm(6)
    plain = AxialAttention(8, heads=2, span=6, position="none").double().eval()
    torch.testing.assert_close(plain(x[:, :, perm]), plain(x)[:, :, perm])   # a set along the axis
    for position in ("q", "qkv"):
        sensitive = AxialAttention(8, heads=2, span=6, position=position).double().eval()
        assert not torch.allclose(sensitive(x[:, :, perm]), sensitive(x)[:, :, perm])


def test_gates_start_at_their_values_and_unit_gates_give_the_ungated_layer():
    torch.manual_seed(0)
    gated = AxialAttention(8, heads=2, span=5, gated=True, norm=False).double()
    assert [g.item() for g in (gated.gate_q, gated.gate_k, gated.gate_v1, gated.gate_v2)] == pytest.approx(
        [0.1, 0.1, 1.0, 0.1])
    plain = AxialAttention(8, heads=2, span=5, norm=False).double()
    state = {k: v for k, v in gated.state_dict().items() if not k.startswith("gate")}
    plain.load_state_dict(state)
    x = torch.randn(2, 8, 5, 4, dtype=torch.float64)
    assert not torch.allclose(gated(x), plain(x))
    with torch.no_grad():
        for g in (gated.gate_q, gated.gate_k, gated.gate_v1, gated.gate_v2):
            g.fill_(1.0)
    torch.testing.assert_close(gated(x), plain(x))
    with torch.no_grad():                                                    # G_Q = G_K = G_V2 = 0: no positions
        for g in (gated.gate_q, gated.gate_k, gated.gate_v2):
            g.fill_(0.0)
    none = AxialAttention(8, heads=2, span=5, position="none", norm=False).double()
    none.load_state_dict({"to_qkv.weight": gated.to_qkv.weight})
    torch.testing.assert_close(gated(x), none(x))


def test_axial_attention_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = AxialAttention(4, heads=2, span=4, axis="width", stride=2, gated=True).double()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_axial_resnet_downsamples_like_resnet_and_its_blocks_start_as_shortcuts():
    model = archzoo.create_model("axial_resnet26_s", num_classes=7, img_size=64).eval()
    with torch.no_grad():
        assert model.forward_features(torch.rand(1, 3, 64, 64)).shape == (1, 1024, 2, 2)
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 7)
    block = model.stages[1][1]                                               # identity shortcut, bn2 gamma = 0
    x = torch.rand(1, 256, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))


def test_small_axial_resnet_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = archzoo.create_model("axial_resnet_tiny", num_classes=4)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 4, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = fixed_batch_losses(lambda: F.cross_entropy(model(x), y), opt, 25)
    assert losses[-1] < 0.5 * losses[0]


def test_targets_point_every_thing_pixel_to_its_centre_of_mass():
    scenes = make_scenes(4, size=24, seed=3)
    heatmap, offset = panoptic_targets(scenes.instance, sigma=2.0)
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    for i in range(4):
        for k in scenes.instance[i].unique().tolist():
            mask = scenes.instance[i] == k
            if k == 0:
                assert (offset[i][:, mask] == 0).all()
                continue
            centre = torch.stack([ys[mask].mean(), xs[mask].mean()])
            moved = torch.stack([ys[mask] + offset[i, 0][mask], xs[mask] + offset[i, 1][mask]], -1)
            torch.testing.assert_close(moved, centre.expand_as(moved))
    assert heatmap.max() <= 1.0 and heatmap.max() > 0.8


def test_centres_are_local_maxima_above_the_threshold():
    heat = torch.zeros(10, 10)
    heat[2, 3], heat[2, 4], heat[7, 7], heat[0, 9] = 0.9, 0.5, 0.6, 0.05     # (2, 4) is suppressed by (2, 3)
    assert find_centers(heat, threshold=0.1).tolist() == [[2, 3], [7, 7]]
    assert find_centers(heat, threshold=0.1, top_k=1).tolist() == [[2, 3]]
    assert find_centers(heat, threshold=0.95).shape == (0, 2)


def test_grouping_recovers_touching_instances_and_votes_their_class():
    scenes = make_scenes(1, size=16, seed=0)
    sem = torch.zeros(16, 16, dtype=torch.long)
    inst = torch.zeros(16, 16, dtype=torch.long)
    sem[4:8, 2:6], inst[4:8, 2:6] = 3, 1                                     # two squares that touch
    sem[4:8, 6:10], inst[4:8, 6:10] = 3, 2
    heatmap, offset = panoptic_targets(inst[None], sigma=1.0)
    logits = F.one_hot(sem, 5).permute(2, 0, 1).float()[None] * 10
    logits[0, :, 5, 3] = 0
    logits[0, 2, 5, 3] = 10                                                  # one pixel predicted as class 2
    p_sem, p_inst = panoptic_inference({"semantic": logits, "center": heatmap, "offset": offset}, THING_IDS)
    assert p_sem[0, 5, 3] == 3                                               # majority vote of its instance
    q = panoptic_quality([(p_sem[0], p_inst[0])], [(sem, inst)], 5, THING_IDS)
    assert q["pq"] == 1.0
    assert scenes.images.shape == (1, 1, 16, 16)


def test_conv_twin_has_the_same_heads_and_a_3x3_convolution_for_each_attention_pair():
    axial, conv = AxialDeepLab(5, 1, 32), AxialDeepLab(5, 1, 32, block="conv")
    (a_block,), (c_block,) = axial.backbone.stages[0], conv.backbone.stages[0]
    attention = n_params(a_block.height_attention) + n_params(a_block.width_attention)
    assert n_params(c_block) - n_params(c_block.conv2) - n_params(c_block.bn2) == n_params(a_block) - attention
    assert n_params(conv) == n_params(axial) - attention + 32 * 32 * 9 + 2 * 32 == 70_664
    assert not any(isinstance(m, AxialAttention) for m in conv.modules())
    heads = ("semantic_head", "center_head", "offset_head")
    assert [n_params(getattr(conv, h)) for h in heads] == [n_params(getattr(axial, h)) for h in heads]
    x = torch.rand(2, 1, 32, 32)
    assert {k: v.shape for k, v in conv(x).items()} == {k: v.shape for k, v in axial(x).items()}


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="C=8"):
        AxialAttention(8, heads=2, span=5)(torch.rand(1, 4, 5, 5))
    with pytest.raises(ValueError, match="span"):
        AxialAttention(8, heads=2, span=5)(torch.rand(1, 8, 6, 5))
    with pytest.raises(ValueError, match="divisible"):
        AxialAttention(8, 12, heads=4)
    with pytest.raises(ValueError, match="axis"):
        AxialAttention(8, heads=2, axis="depth")
    with pytest.raises(ValueError, match="position"):
        AxialAttention(8, heads=2, position="k")
    with pytest.raises(ValueError, match="gated"):
        AxialAttention(8, heads=2, position="none", gated=True)
    with pytest.raises(ValueError, match="block"):
        AxialDeepLab(block="transformer")


@pytest.mark.parametrize("name", ["cost_scaling", "position_sensitivity", "panoptic_scenes"])
def test_quick_claim_metrics(quick_claim, name):
    metrics = quick_claim("axial_deeplab", name)["metrics"]              # run once (tests/test_claims_quick.py)
    if name == "cost_scaling":
        assert metrics["slopes"]["global_attention"]["peak_mb"] > metrics["slopes"]["axial"]["peak_mb"]
    elif name == "position_sensitivity":
        assert set(metrics["test_accuracy"]) == {"none", "q", "qkv"}
    else:
        assert set(metrics["test"]) == set(metrics["best_lr"]) == {"axial", "conv"}
        assert all(0.0 <= m["pq"] <= 1.0 for m in metrics["test"].values())
        test = metrics["test"]
        assert metrics["axial_minus_conv_pq"] == pytest.approx(test["axial"]["pq"] - test["conv"]["pq"])
        assert metrics["trivial_baseline"]["pq_things"] == 0.0 and metrics["trivial_baseline"]["pq_stuff"] > 0.3
