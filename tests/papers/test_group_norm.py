"""Group Normalization (Wu & He 2018, arXiv:1803.08494): the layer written out (`reference_forward`) against
PyTorch's GN, LN and IN, batch independence (its `forward`, the fused fast path, equals `reference_forward`:
tests/contract/test_layers.py), the norm-layer helper, the preset and the claim."""

import functools
from types import SimpleNamespace

import pytest
import torch

import archzoo
from archzoo.papers.group_norm import GroupNorm
from archzoo.papers.group_norm.claims import make_net
from archzoo.papers.group_norm.group_norm import group_norm


def randomized(gn: GroupNorm) -> GroupNorm:
    """Non-trivial gamma and beta, so that the affine map (Eq. 6) is part of what is compared."""
    with torch.no_grad():
        gn.weight.uniform_(0.5, 2.0)
        gn.bias.uniform_(-1.0, 1.0)
    return gn


@pytest.mark.parametrize("shape, groups", [((4, 6, 5, 5), 3), ((3, 8, 7), 4), ((2, 12, 3, 4, 5), 6), ((5, 6), 2)])
def test_group_norm_equals_torch_group_norm_outputs_and_gradients(shape, groups):
    torch.manual_seed(0)
    ours = randomized(GroupNorm(groups, shape[1]).double())
    ref = torch.nn.GroupNorm(groups, shape[1]).double()
    ref.load_state_dict(ours.state_dict())
    x = (3.0 * torch.randn(*shape, dtype=torch.float64) + 1.0).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    torch.testing.assert_close(ours.reference_forward(x), ref(x_ref))
    w = torch.randn(*shape, dtype=torch.float64)                          # a generic downstream loss
    (ours.reference_forward(x) * w).sum().backward()
    (ref(x_ref) * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)


def test_group_norm_matches_the_papers_figure3_code():
    # Fig. 3: reshape to [N, G, C//G, H, W], moments over axes 2, 3, 4, normalise, reshape back, x * gamma + beta
    torch.manual_seed(0)
    n, c, h, w, g = 2, 8, 4, 3, 4
    gn = randomized(GroupNorm(g, c).double())
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    xg = x.reshape(n, g, c // g, h, w)
    mean = xg.mean(dim=(2, 3, 4), keepdim=True)
    var = ((xg - mean) ** 2).mean(dim=(2, 3, 4), keepdim=True)
    expected = ((xg - mean) / torch.sqrt(var + 1e-5)).reshape(n, c, h, w)
    expected = expected * gn.weight.view(1, c, 1, 1) + gn.bias.view(1, c, 1, 1)
    torch.testing.assert_close(gn.reference_forward(x), expected)


def test_group_norm_gradients_pass_gradcheck():
    torch.manual_seed(0)
    gn = randomized(GroupNorm(2, 4).double())
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    gamma, beta = (p.detach().clone().requires_grad_() for p in (gn.weight, gn.bias))

    def f(x, gamma, beta):
        return torch.func.functional_call(gn, {"weight": gamma, "bias": beta}, (x,))

    assert torch.autograd.gradcheck(f, (x, gamma, beta))


def test_group_norm_with_one_group_is_layer_norm():
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64)
    gn = GroupNorm(1, 6, affine=False).double()
    ln = torch.nn.LayerNorm((6, 5, 5), elementwise_affine=False).double()
    torch.testing.assert_close(gn(x), ln(x))


def test_group_norm_with_one_channel_per_group_is_instance_norm():
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64)
    gn = GroupNorm(6, 6, affine=False).double()
    inorm = torch.nn.InstanceNorm2d(6, affine=False).double()
    torch.testing.assert_close(gn(x), inorm(x))


def test_each_group_of_each_sample_is_normalised_to_zero_mean_unit_variance():
    x = 5.0 * torch.randn(3, 8, 6, 6, dtype=torch.float64) - 2.0
    y = GroupNorm(4, 8, affine=False, eps=0.0).double()(x).reshape(3, 4, -1)   # (B, G, C/G * H * W)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 4, dtype=torch.float64))
    torch.testing.assert_close(y.var(-1, correction=0), torch.ones(3, 4, dtype=torch.float64))


def test_output_of_a_sample_does_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    gn = randomized(GroupNorm(4, 8).double())
    x = torch.randn(5, 8, 6, 6, dtype=torch.float64)
    other = x.clone()
    other[1:] = 10.0 * torch.randn(4, 8, 6, 6, dtype=torch.float64) + 3.0     # change every other sample
    torch.testing.assert_close(gn(x)[0], gn(other)[0], rtol=0, atol=0)
    torch.testing.assert_close(gn(x)[:1], gn(x[:1]))                          # a batch of one gives the same
    bn = torch.nn.BatchNorm2d(8).double()                                     # ... which BN (Eq. 3) does not
    assert not torch.allclose(bn(x)[0], bn(other)[0])


def test_training_and_evaluation_modes_compute_the_same_function():
    torch.manual_seed(0)
    gn = randomized(GroupNorm(4, 8).double())
    x = torch.randn(3, 8, 5, 5, dtype=torch.float64)
    y_train = gn.train()(x)
    torch.testing.assert_close(gn.eval()(x), y_train, rtol=0, atol=0)
    assert not list(gn.buffers())                                             # no running statistics


def test_gamma_and_beta_are_per_channel():
    gn = GroupNorm(4, 8)
    assert gn.weight.shape == gn.bias.shape == (8,)
    assert torch.equal(gn.weight, torch.ones(8)) and torch.equal(gn.bias, torch.zeros(8))
    assert sum(p.numel() for p in GroupNorm(2, 8, affine=False).parameters()) == 0


def test_indivisible_channels_and_wrong_input_raise_value_error():
    with pytest.raises(ValueError, match="divisible"):
        GroupNorm(3, 8)
    gn = GroupNorm(2, 8)
    with pytest.raises(ValueError, match=r"expected shape \(B, C=8, \.\.\.\), got \(2, 6, 4, 4\)"):
        gn(torch.randn(2, 6, 4, 4))
    with pytest.raises(ValueError, match="expected shape"):
        gn(torch.randn(8))
    with pytest.raises(ValueError, match="float"):
        gn(torch.ones(2, 8, 3, 3, dtype=torch.long))


def test_group_norm_helper_chooses_the_groups():
    assert group_norm(64).num_groups == 32                                   # the paper's G = 32
    assert group_norm(16).num_groups == 16                                   # G = min(32, C): IN when C < 32
    assert group_norm(64, num_groups=8).num_groups == 8
    assert group_norm(64, channels_per_group=16).num_groups == 4            # Table 3, bottom rows
    norm_layer = functools.partial(group_norm, channels_per_group=4)
    assert [norm_layer(c).num_groups for c in (8, 16, 32)] == [2, 4, 8]
    with pytest.raises(ValueError, match="not both"):
        group_norm(64, num_groups=8, channels_per_group=8)
    with pytest.raises(ValueError, match="multiple"):
        group_norm(12, channels_per_group=8)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet20_gn_has_exactly_the_parameters_of_resnet20_with_bn():
    # GN keeps BN's per-channel gamma and beta and drops only its running statistics (buffers, not parameters)
    gn, bn = archzoo.create_model("resnet20_gn"), archzoo.create_model("resnet20")
    assert n_params(gn) == n_params(bn) == 269_722
    assert {k: v.shape for k, v in gn.named_parameters()} == {k: v.shape for k, v in bn.named_parameters()}
    assert not list(gn.buffers())
    norms = [m for m in gn.modules() if isinstance(m, GroupNorm)]
    assert len(norms) == 19 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in gn.modules())
    assert {(m.num_channels, m.num_groups) for m in norms} == {(16, 8), (32, 8), (64, 8)}


def test_resnet20_gn_starts_each_residual_blocks_last_gamma_at_zero():
    model = archzoo.create_model("resnet20_gn")
    for stage in model.stages:
        for block in stage:
            assert torch.equal(block.bn2.weight, torch.zeros_like(block.bn2.weight))
            assert torch.equal(block.bn1.weight, torch.ones_like(block.bn1.weight))


def test_a_gn_net_learns_from_one_image_per_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = archzoo.create_model("resnet20_gn", num_classes=3, in_chans=1, num_groups=4)
    x, y = torch.randn(1, 1, 12, 12), torch.tensor([2])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = fixed_batch_losses(lambda: torch.nn.functional.cross_entropy(model(x), y), opt, 15)
    assert losses[-1] < 0.5 * losses[0]


def test_claim_bn_and_gn_twins_differ_only_in_the_norm_layer():
    cfg = SimpleNamespace(depth=8, width=4, groups=2)
    torch.manual_seed(0)
    bn = make_net("bn", cfg, 10, 1)
    torch.manual_seed(0)
    gn = make_net("gn", cfg, 10, 1)
    bn_params, gn_params = dict(bn.named_parameters()), dict(gn.named_parameters())
    assert bn_params.keys() == gn_params.keys()
    for k, v in bn_params.items():
        torch.testing.assert_close(gn_params[k], v, rtol=0, atol=0)      # same convolution weights, gamma, beta


def test_quick_claim_keeps_the_images_seen_and_scales_the_learning_rate(quick_claim):
    record = quick_claim("group_norm", "batch_size_robustness")          # run once (tests/test_claims_quick.py)
    m = record["metrics"]
    assert set(m["gn_error"]) == set(m["bn_error"]) == {"8", "2"}
    assert m["steps"] == {"8": 8, "2": 32}                                # the same 64 images at both batch sizes
    assert m["lr"] == {"8": 0.0125, "2": 0.003125}                        # linear scaling rule, base_lr B / 32
    assert record["passed"] == (m["gn_spread"] <= 1.5 and m["gn_error"]["2"] < m["bn_error"]["2"])
