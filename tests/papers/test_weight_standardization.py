"""Weight Standardization and Batch-Channel Normalization (Qiao et al. 2019, arXiv:1903.10520): the mathematics of
WS (Eq. 5-9) and of micro-batch BCN (Algorithm 1), the GN+WS / BCN+WS nets, the claim."""


import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.papers.group_norm import GroupNorm
from archzoo.papers.resnet import CifarResNet
from archzoo.papers.weight_standardization import BatchChannelNorm, WSConv2d, cifar_resnet_gn_ws, standardize_weight


def ws_conv(in_ch=3, out_ch=5, k=3, eps=0.0, bias=False, **kw) -> WSConv2d:
    torch.manual_seed(0)
    conv = WSConv2d(in_ch, out_ch, k, eps=eps, bias=bias, **kw).double()
    with torch.no_grad():                                         # a non-centred, non-unit weight to standardize
        conv.weight.mul_(3.0).add_(torch.linspace(-1, 2, out_ch, dtype=torch.float64).view(-1, 1, 1, 1))
    return conv


# ----------------------------------------------------------------------------- weight standardization, Eq. 5-6


def test_standardized_weights_have_zero_mean_and_unit_variance_per_output_channel():
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64) * 5 + 2
    rows = standardize_weight(w, eps=0.0).flatten(1)                      # (C_out, I)
    torch.testing.assert_close(rows.mean(1), torch.zeros(6, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(rows.var(1), torch.ones(6, dtype=torch.float64))          # unbiased, as released
    near = standardize_weight(w).flatten(1).var(1)                                         # eps = 1e-5 on sigma
    assert torch.all((near < 1) & (near > 1 - 1e-4))


def test_ws_conv_equals_conv2d_with_manually_standardized_weights():
    conv = ws_conv(4, 6, 3, eps=1e-5, bias=True, stride=2, padding=1)
    w = conv.weight.detach()
    manual = torch.empty_like(w)
    for i in range(w.shape[0]):                                           # Eq. 6, one output channel at a time
        row = w[i].flatten()
        mu = row.sum() / row.numel()
        sigma = torch.sqrt(((row - mu) ** 2).sum() / (row.numel() - 1))
        manual[i] = (w[i] - mu) / (sigma + 1e-5)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(conv(x), F.conv2d(x, manual, conv.bias, stride=2, padding=1))


def test_ws_conv_passes_gradcheck_through_the_standardization():
    conv = ws_conv(2, 3, 3, eps=1e-5, bias=True, padding=1)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = conv.weight.detach().clone().requires_grad_(True)

    def f(x, w):
        return F.conv2d(x, standardize_weight(w, conv.eps), conv.bias, padding=1)

    assert torch.autograd.gradcheck(f, (x, w))
    assert torch.autograd.gradgradcheck(f, (x, w))


def test_weight_gradient_is_the_projection_of_eq7_8():
    # with g = dL/dW_hat: dL/dW = (g - mean(g) - <W_hat, g> W_hat / (I - 1)) / sigma, per output channel
    conv = ws_conv(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    target = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    w_hat = standardize_weight(conv.weight, 0.0).detach().requires_grad_(True)
    F.mse_loss(F.conv2d(x, w_hat, padding=1), target).backward()
    F.mse_loss(conv(x), target).backward()
    g, w_h = w_hat.grad.flatten(1), w_hat.detach().flatten(1)             # (C_out, I)
    n, sigma = g.shape[1], conv.weight.detach().flatten(1).std(1, keepdim=True)
    expected = (g - g.mean(1, keepdim=True) - (w_h * g).sum(1, keepdim=True) * w_h / (n - 1)) / sigma
    grad = conv.weight.grad.flatten(1)
    torch.testing.assert_close(grad, expected)
    # hence: zero mean per output channel, orthogonal to the centred weights, and a smaller norm (Eq. 9)
    centred = conv.weight.detach().flatten(1) - conv.weight.detach().flatten(1).mean(1, keepdim=True)
    torch.testing.assert_close(grad.mean(1), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close((grad * centred).sum(1), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-12)
    eq9 = (g.square().sum(1) - n * g.mean(1).square() - (w_h * g).sum(1).square() / (n - 1)) / sigma[:, 0] ** 2
    torch.testing.assert_close(grad.square().sum(1), eq9)
    assert torch.all(grad.square().sum(1) <= g.square().sum(1) / sigma[:, 0] ** 2)


@pytest.mark.parametrize("eps, tol", [(0.0, 1e-12), (1e-5, 1e-4)])
def test_ws_conv_is_invariant_to_a_positive_affine_map_of_each_output_channels_weights(eps, tol):
    conv = ws_conv(3, 4, 3, eps=eps, padding=1)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    before = conv(x)
    a = torch.tensor([0.3, 1.0, 4.0, 17.0], dtype=torch.float64).view(-1, 1, 1, 1)
    b = torch.tensor([-2.0, 0.5, 3.0, 0.0], dtype=torch.float64).view(-1, 1, 1, 1)
    with torch.no_grad():
        conv.weight.mul_(a).add_(b)                                       # W_i -> a_i W_i + b_i
    torch.testing.assert_close(conv(x), before, rtol=tol, atol=tol)
    assert not torch.allclose(F.conv2d(x, conv.weight, padding=1), F.conv2d(x, conv.weight / a, padding=1))


def test_ws_conv_rejects_wrong_input_and_a_single_weight_fan_in():
    conv = WSConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"expected shape \(B, C=3, H, W\), got \(2, 4, 8, 8\)"):
        conv(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match="expected shape"):
        conv(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="fan-in of at least 2"):
        WSConv2d(1, 4, 1)


# ----------------------------------------------------------------------------- batch-channel normalization


def bcn(num_channels=8, num_groups=4, momentum=0.1) -> BatchChannelNorm:
    torch.manual_seed(1)
    norm = BatchChannelNorm(num_channels, num_groups, momentum=momentum).double()
    with torch.no_grad():                                                 # non-trivial affine maps in both parts
        for p in (norm.weight, norm.channel_norm.weight):
            p.uniform_(0.5, 2.0)
        for p in (norm.bias, norm.channel_norm.bias):
            p.uniform_(-1.0, 1.0)
    return norm


def bn_then_gn(norm: BatchChannelNorm, x):
    gn = GroupNorm(norm.channel_norm.num_groups, norm.num_channels).double()
    gn.load_state_dict(norm.channel_norm.state_dict())
    return gn(F.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=norm.eps))


def test_bcn_with_update_rate_one_is_batch_norm_followed_by_group_norm():
    norm = bcn(momentum=1.0)
    x = torch.randn(16, 8, 5, 5, dtype=torch.float64) * 3 + 1
    torch.testing.assert_close(norm(x), bn_then_gn(norm, x))


def test_bcn_estimates_move_by_r_towards_the_micro_batch_statistics_and_converge():
    norm, r = bcn(momentum=0.25), 0.25
    x = torch.randn(64, 8, 6, 6, dtype=torch.float64) * 2 + 3                # one large batch, seen again and again
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
    norm(x)
    torch.testing.assert_close(norm.running_mean, r * mean)                 # from mu_hat = 0
    torch.testing.assert_close(norm.running_var, (1 - r) + r * var)         # from sigma_hat^2 = 1
    for _ in range(99):
        y = norm(x)
    torch.testing.assert_close(norm.running_mean, mean)                     # (1 - r)^100 ~ 3e-13
    torch.testing.assert_close(y, bn_then_gn(norm, x))                      # -> BN followed by GN


def test_bcn_in_eval_uses_the_estimates_without_updating_them_and_is_per_sample():
    norm = bcn()
    x = torch.randn(4, 8, 5, 5, dtype=torch.float64) + 2
    for _ in range(3):
        norm(x)
    estimates = norm.running_mean.clone(), norm.running_var.clone()
    norm.eval()
    y = norm(x)
    assert torch.equal(norm.running_mean, estimates[0]) and torch.equal(norm.running_var, estimates[1])
    x_dot = (x - estimates[0].view(1, -1, 1, 1)) / torch.sqrt(estimates[1].view(1, -1, 1, 1) + norm.eps)
    x_dot = x_dot * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(y, norm.channel_norm(x_dot))
    torch.testing.assert_close(y[1:2], norm(x[1:2]))                        # no batch dependence in eval


def test_bcn_train_step_differentiates_with_the_estimates_as_constants():
    # Algorithm 1: the estimates are not functions of x for back-propagation, unlike BN's batch statistics
    norm = bcn(momentum=1.0)
    x = (torch.randn(6, 8, 4, 4, dtype=torch.float64) + 1).requires_grad_(True)
    target = torch.randn(6, 8, 4, 4, dtype=torch.float64)
    (grad_bcn,) = torch.autograd.grad(F.mse_loss(norm(x), target), x)       # train step, estimates := batch stats
    norm.eval()
    (grad_frozen,) = torch.autograd.grad(F.mse_loss(norm(x), target), x)    # the same estimates, frozen
    torch.testing.assert_close(grad_bcn, grad_frozen)
    (grad_bn,) = torch.autograd.grad(F.mse_loss(bn_then_gn(norm, x), target), x)
    assert not torch.allclose(grad_bcn, grad_bn)                            # same forward, different gradient


def test_bcn_trains_with_one_image_per_batch():
    norm = bcn()
    y = norm(torch.randn(1, 8, 3, 3, dtype=torch.float64))
    assert y.shape == (1, 8, 3, 3) and torch.isfinite(y).all()


def test_bcn_rejects_wrong_input_and_update_rate():
    with pytest.raises(ValueError, match=r"expected shape \(B, C=8, H, W\), got \(2, 6, 4, 4\)"):
        BatchChannelNorm(8, 4)(torch.randn(2, 6, 4, 4))
    with pytest.raises(ValueError, match="update rate"):
        BatchChannelNorm(8, 4, momentum=0.0)
    with pytest.raises(ValueError, match="divisible"):
        BatchChannelNorm(8, 3)


# ----------------------------------------------------------------------------- the GN+WS and BCN+WS nets


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_gn_ws_resnet20_has_exactly_the_parameters_of_resnet20_and_bcn_adds_a_second_affine_pair():
    bn, gn_ws, bcn_ws = (archzoo.create_model(n) for n in ("resnet20", "resnet20_gn_ws", "resnet20_bcn_ws"))
    assert n_params(bn) == n_params(gn_ws) == 269_722                    # WS adds nothing, GN has BN's gamma, beta
    normalized = 16 + 3 * 2 * 16 + 3 * 2 * 32 + 3 * 2 * 64               # channels behind a norm: stem + 3 stages
    assert n_params(bcn_ws) == 269_722 + 2 * normalized == 271_098       # + (gamma_b, beta_b) per channel
    convs = [m for m in gn_ws.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 and all(isinstance(m, WSConv2d) for m in convs)
    assert sum(isinstance(m, GroupNorm) for m in gn_ws.modules()) == 19
    assert sum(isinstance(m, BatchChannelNorm) for m in bcn_ws.modules()) == 19


def test_gn_ws_net_differs_from_the_gn_net_by_the_standardization_alone():
    torch.manual_seed(0)
    gn_ws = cifar_resnet_gn_ws(8, 2, in_chans=1, width=4).double()
    plain_convs = CifarResNet(8, in_chans=1, width=4, norm_layer=lambda c: GroupNorm(2, c)).double()
    plain_convs.load_state_dict(gn_ws.state_dict())                      # same parameters, same names
    with torch.no_grad():
        for m, ws in zip(plain_convs.modules(), gn_ws.modules()):
            if isinstance(ws, WSConv2d):
                m.weight.copy_(ws.standardized_weight())
    x = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(gn_ws(x), plain_convs(x))


@pytest.mark.parametrize("name", ["resnet20_gn_ws", "resnet20_bcn_ws"])
def test_micro_batch_nets_fit_a_fixed_batch_of_two_images(name):
    torch.manual_seed(0)
    model = archzoo.create_model(name, num_classes=3, in_chans=1, width=4, num_groups=2)
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_bcn_net_rejects_zero_init_residual():
    with pytest.raises(ValueError, match="gamma_b"):
        archzoo.create_model("resnet20_bcn_ws", zero_init_residual=True)


def test_quick_micro_batch_claim_sees_the_same_images_in_every_net(quick_claim):
    metrics = quick_claim("weight_standardization", "micro_batch_gn_ws")["metrics"]   # run once (test_claims_quick)
    assert set(metrics["test_error"]) == {"bn", "gn", "gn_ws"}
    assert metrics["steps"] == {"bn": 2, "gn": 32, "gn_ws": 32}          # the same 64 images seen by every net
    assert all(0 <= e <= 100 for e in metrics["test_error"].values())
