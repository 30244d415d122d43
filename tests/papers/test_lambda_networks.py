"""LambdaNetworks (Bello 2021, arXiv:2102.08602): the lambda layer's equations, its two forms, presets, the claims."""


import pytest
import torch

import archzoo
from archzoo.papers.lambda_networks import LambdaLayer


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_bn(layer: LambdaLayer) -> LambdaLayer:
    """Non-trivial BN running statistics and affine parameters, so eval mode is not the identity."""
    for bn in (layer.norm_q, layer.norm_v):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    return layer.eval()


@pytest.mark.parametrize("name, count, paper", [
    ("lambda_resnet50", 14_995_592, "15.0"), ("lambda_resnet50_u4", 16_531_880, None),
    ("lambda_resnet50_c4c5", 15_559_736, None), ("lambda_resnet8", 40_042, None),
])
def test_presets_have_their_parameter_counts(name, count, paper):
    with torch.device("meta"):
        n = n_params(archzoo.create_model(name))
    assert n == count
    if paper is not None:
        assert f"{n / 1e6:.1f}" == paper                # Table 3: 15.0M, against ResNet-50's 25.6M


def test_global_form_is_the_papers_equation_position_by_position():
    torch.manual_seed(0)
    layer = randomize_bn(LambdaLayer(6, 8, dim_k=3, heads=2, dim_u=2, r=None, size=(3, 4)).double())
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    y = layer(x)
    q = layer.norm_q(layer.to_q(x)).flatten(2).view(2, 2, 3, 12)          # (B, h, k, n)
    k = layer.to_k(x).flatten(2).view(2, 2, 3, 12).softmax(-1)            # (B, u, k, m)
    v = layer.norm_v(layer.to_v(x)).flatten(2).view(2, 2, 4, 12)          # (B, u, v, m)
    pos = [(i, j) for i in range(3) for j in range(4)]
    for b in range(2):
        lam_c = sum(k[b, u] @ v[b, u].T for u in range(2))             # K bar^T V, (k, v)
        for n, (i, j) in enumerate(pos):
            e = torch.stack([layer.rel_pos_emb[:, :, i2 - i + 2, j2 - j + 3] for i2, j2 in pos])   # E_n, (m, k, u)
            lam_p = sum(e[:, :, u].T @ v[b, u].T for u in range(2))        # E_n^T V, (k, v)
            for h in range(2):
                torch.testing.assert_close(y[b, h * 4:(h + 1) * 4, i, j], q[b, h, :, n] @ (lam_c + lam_p))


@pytest.mark.parametrize("r", [5, 7])
def test_lambda_convolution_equals_the_global_form_when_the_context_lies_in_the_kernel(r):
    torch.manual_seed(0)
    local = randomize_bn(LambdaLayer(8, 8, dim_k=4, heads=2, dim_u=2, r=r).double())
    glob = LambdaLayer(8, 8, dim_k=4, heads=2, dim_u=2, r=None, size=(4, 4)).double().eval()   # R: 7 x 7
    state = dict(local.state_dict())
    emb = torch.zeros(4, 2, 7, 7, dtype=torch.float64)                    # zero outside the r x r kernel
    c = (7 - r) // 2
    emb[:, :, c:c + r, c:c + r] = state["rel_pos_emb"]
    state["rel_pos_emb"] = emb
    glob.load_state_dict(state)
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(local(x), glob(x))


def test_lambda_convolution_is_translation_equivariant_away_from_the_borders():
    torch.manual_seed(0)
    r, dy, dx = 5, 2, 3
    layer = randomize_bn(LambdaLayer(8, 8, dim_k=4, heads=2, r=r).double())
    x = torch.randn(1, 8, 14, 15, dtype=torch.float64)
    y, y_shift = layer(x), layer(torch.roll(x, (dy, dx), dims=(2, 3)))   # the content lambda ignores order
    c = r // 2
    torch.testing.assert_close(y_shift[..., c + dy:14 - c, c + dx:15 - c], y[..., c:14 - c - dy, c:15 - c - dx])
    assert not torch.allclose(y_shift, y)


def test_multi_query_heads_share_the_same_lambdas():
    torch.manual_seed(0)
    multi = randomize_bn(LambdaLayer(8, 12, dim_k=4, heads=3, r=3).double())
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    y = multi(x)
    for h in range(3):                                                    # one head = a 1-head layer, same K, V, E
        single = LambdaLayer(8, 4, dim_k=4, heads=1, r=3).double().eval()
        state = dict(multi.state_dict())
        for key in ("to_q.weight", "norm_q.weight", "norm_q.bias", "norm_q.running_mean", "norm_q.running_var"):
            state[key] = state[key][h * 4:(h + 1) * 4]
        single.load_state_dict(state)
        torch.testing.assert_close(single(x), y[:, h * 4:(h + 1) * 4])


def test_lambda_layer_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = LambdaLayer(4, 4, dim_k=2, heads=2, dim_u=2, r=3).double()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_small_lambda_resnet_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = archzoo.create_model("lambda_resnet8", num_classes=4, in_chans=1)
    x, y = torch.rand(16, 1, 16, 16), torch.randint(0, 4, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = fixed_batch_losses(lambda: torch.nn.functional.cross_entropy(model(x), y), opt, 15)
    assert losses[-1] < 0.5 * losses[0]


def test_a_fresh_lambda_resnet_starts_with_every_block_as_its_shortcut_and_stays_finite_in_eval_mode():
    torch.manual_seed(0)
    model = archzoo.create_model("lambda_resnet50").eval()
    assert all(torch.count_nonzero(block.bn3.weight) == 0 for stage in model.stages for block in stage)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()
        old = archzoo.create_model("lambda_resnet50", zero_init_residual=False).eval()
        assert not torch.isfinite(old(x)).all()               # a lambda layer is quadratic in its input


def test_lambda_resnet50_downsamples_like_resnet50():
    model = archzoo.create_model("lambda_resnet50", num_classes=7).eval()
    with torch.no_grad():
        assert model.forward_features(torch.rand(1, 3, 64, 64)).shape == (1, 2048, 2, 2)
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 7)


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="C=8"):
        LambdaLayer(8, r=3)(torch.rand(1, 4, 5, 5))
    with pytest.raises(ValueError, match="H=4"):
        LambdaLayer(8, r=None, size=(4, 4))(torch.rand(1, 8, 5, 4))
    with pytest.raises(ValueError, match="odd"):
        LambdaLayer(8, r=4)
    with pytest.raises(ValueError, match="divisible"):
        LambdaLayer(8, 10, heads=4)
    with pytest.raises(ValueError, match="exactly one"):
        LambdaLayer(8, r=3, size=(4, 4))


@pytest.mark.parametrize("name", ["memory_scaling", "accuracy"])
def test_quick_claim_metrics(quick_claim, name):
    metrics = quick_claim("lambda_networks", name)["metrics"]            # run once (tests/test_claims_quick.py)
    if name == "memory_scaling":
        assert metrics["slopes"]["self_attention"]["peak_mb"] > metrics["slopes"]["lambda"]["peak_mb"]
    else:
        assert set(metrics["test_error"]) == {"resnet8", "lambda_resnet8"}
