"""Batch Normalization (Ioffe & Szegedy 2015, arXiv:1502.03167): Algorithms 1 and 2 written out
(`reference_forward`) against torch.nn.BatchNorm, the paper's backward formulas, its invariances, the layer as a
module (its `forward`, the fused fast path, equals `reference_forward`: tests/contract/test_layers.py), the Sec. 4.1
network and the claims."""

import numpy as np
import pytest
import torch

import archzoo
from archzoo.papers.batch_norm import BatchNorm1d, BatchNorm2d
from archzoo.papers.batch_norm.batch_norm import batch_statistics, normalize_scale_shift
from archzoo.papers.resnet import CifarResNet

SHAPES = {"1d (B, C)": (BatchNorm1d, torch.nn.BatchNorm1d, (16, 5)),
          "1d (B, C, L)": (BatchNorm1d, torch.nn.BatchNorm1d, (6, 5, 7)),
          "2d (B, C, H, W)": (BatchNorm2d, torch.nn.BatchNorm2d, (4, 5, 3, 6))}


def pair(kind: str, momentum=0.1, affine=True):
    """Our BN and torch's, float64, with the same random gamma and beta."""
    ours, theirs, shape = SHAPES[kind]
    a = ours(shape[1], momentum=momentum, affine=affine).double()
    b = theirs(shape[1], momentum=momentum, affine=affine).double()
    if affine:
        with torch.no_grad():
            a.weight.uniform_(0.5, 2.0), a.bias.uniform_(-1.0, 1.0)
        b.load_state_dict(a.state_dict())
    return a, b, shape


def batch(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * 3.0 + 2.0     # far from zero mean, unit variance


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("kind", list(SHAPES))
def test_training_and_eval_outputs_and_running_statistics_equal_torch(kind, momentum):
    torch.manual_seed(0)
    ours, theirs, shape = pair(kind, momentum)
    for step in range(5):                                               # training: batch statistics (Algorithm 1)
        x = batch(shape, step)
        torch.testing.assert_close(ours.reference_forward(x), theirs(x), rtol=1e-12, atol=1e-12)
    for key in ("running_mean", "running_var", "num_batches_tracked"):  # Algorithm 2, step 10
        torch.testing.assert_close(getattr(ours, key), getattr(theirs, key), rtol=1e-12, atol=1e-12)
    assert int(ours.num_batches_tracked) == 5
    ours.eval(), theirs.eval()                                          # inference: population statistics
    x = batch(shape, 99)
    torch.testing.assert_close(ours.reference_forward(x), theirs(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", list(SHAPES))
def test_gradients_wrt_input_gamma_and_beta_equal_torch(kind):
    ours, theirs, shape = pair(kind)
    x = batch(shape, 0)
    upstream = batch(shape, 1)
    grads = []
    for bn, f in ((ours, ours.reference_forward), (theirs, theirs)):
        xi = x.clone().requires_grad_()
        (f(xi) * upstream).sum().backward()
        grads.append((xi.grad, bn.weight.grad, bn.bias.grad))
    for g_ours, g_torch in zip(*grads):
        torch.testing.assert_close(g_ours, g_torch, rtol=1e-10, atol=1e-12)


def test_gradients_are_the_papers_backward_formulas():
    # Sec. 3, the chain rule below Algorithm 1, written out for a (m, C) mini-batch.
    torch.manual_seed(0)
    bn = BatchNorm1d(3, eps=1e-3).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0), bn.bias.uniform_(-1.0, 1.0)
    x = batch((8, 3), 0).requires_grad_()
    dy = batch((8, 3), 1)                                               # dl/dy_i
    (bn.reference_forward(x) * dy).sum().backward()
    m, eps, gamma = x.shape[0], bn.eps, bn.weight.detach()
    xd = x.detach()
    mu, var = xd.mean(0), xd.var(0, unbiased=False)
    x_hat = (xd - mu) / torch.sqrt(var + eps)
    dx_hat = dy * gamma
    dvar = (dx_hat * (xd - mu)).sum(0) * -0.5 * (var + eps) ** -1.5
    dmu = (dx_hat * -1.0 / torch.sqrt(var + eps)).sum(0) + dvar * (-2.0 * (xd - mu)).sum(0) / m
    dx = dx_hat / torch.sqrt(var + eps) + dvar * 2.0 * (xd - mu) / m + dmu / m
    torch.testing.assert_close(x.grad, dx)
    torch.testing.assert_close(bn.weight.grad, (dy * x_hat).sum(0))     # dl/dgamma
    torch.testing.assert_close(bn.bias.grad, dy.sum(0))                 # dl/dbeta


def test_gradcheck_of_the_training_transform():
    bn = BatchNorm2d(2).double()
    x = batch((3, 2, 2, 2), 0).requires_grad_()
    assert torch.autograd.gradcheck(bn.reference_forward, (x,))


def test_training_output_is_normalised_per_channel_before_scale_and_shift():
    bn = BatchNorm2d(4, affine=False).double()
    x = batch((5, 4, 3, 3), 0) * torch.tensor([1.0, 10.0, 0.1, 3.0], dtype=torch.float64).view(1, 4, 1, 1)
    y = bn.reference_forward(x)
    mean, var = batch_statistics(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(y.var((0, 2, 3), unbiased=False), var / (var + bn.eps))   # 1 up to eps
    torch.testing.assert_close(mean, x.mean((0, 2, 3)))


def test_eval_output_of_a_sample_is_independent_of_the_rest_of_the_batch():
    bn = BatchNorm2d(3).double()
    for step in range(3):
        bn(batch((8, 3, 4, 4), step))
    bn.eval()
    stats = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    x = batch((6, 3, 4, 4), 10)
    alone = bn(x[:1])
    torch.testing.assert_close(bn(x)[:1], alone, rtol=0, atol=0)
    torch.testing.assert_close(bn(torch.cat([x[:1], 100 * x[1:]]))[:1], alone, rtol=0, atol=0)
    for before, after in zip(stats, (bn.running_mean, bn.running_var, bn.num_batches_tracked)):
        assert torch.equal(before, after)                               # eval never updates the population stats
    bn.train()
    assert not torch.allclose(bn(x)[:1], bn(torch.cat([x[:1], 100 * x[1:]]))[:1])   # training: it is not


@pytest.mark.parametrize("path", ["forward", "reference_forward"])
def test_cumulative_average_is_algorithm2_population_statistics(path):
    # momentum=None: E[x] = E_B[mu_B], Var[x] = m/(m-1) E_B[sigma_B^2] over the training mini-batches (step 10)
    bn = BatchNorm1d(4, momentum=None).double()
    xs = [batch((10, 4, 3), s) * (1 + s) for s in range(6)]
    for x in xs:
        getattr(bn, path)(x)
    means = torch.stack([x.mean((0, 2)) for x in xs])
    variances = torch.stack([x.var((0, 2), unbiased=False) for x in xs])
    m = 10 * 3
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, m / (m - 1) * variances.mean(0))


def test_the_folded_affine_map_is_algorithm1_lines_3_and_4():
    # gamma / sqrt(var + eps) * x + (beta - gamma mean / sqrt(var + eps)) = gamma (x - mean) / sqrt(var + eps) + beta
    x = batch((7, 3, 2, 2), 0)
    mean, var = torch.tensor([1.0, -2.0, 0.5]).double(), torch.tensor([0.5, 4.0, 2.0]).double()
    gamma, beta = torch.tensor([2.0, 0.3, -1.0]).double(), torch.tensor([0.1, -0.5, 3.0]).double()
    c = (1, 3, 1, 1)
    x_hat = (x - mean.view(c)) / torch.sqrt(var.view(c) + 1e-5)
    y = gamma.view(c) * x_hat + beta.view(c)
    torch.testing.assert_close(normalize_scale_shift(x, mean, var, gamma, beta, 1e-5), y)
    torch.testing.assert_close(normalize_scale_shift(x, mean, var, None, None, 1e-5), x_hat)


def test_bn_cancels_a_bias_and_is_invariant_to_the_scale_of_the_weights():
    # Sec. 3.2: BN(Wu + b) = BN(Wu), so b can be dropped; Sec. 3.3: BN((aW)u) = BN(Wu), so dBN/du is scale-free
    torch.manual_seed(0)
    u = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
    w, b = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    bn = BatchNorm1d(5, eps=0.0).double().reference_forward         # exactly, with eps = 0 (F.batch_norm needs > 0)
    torch.testing.assert_close(bn(u @ w.T + b), bn(u @ w.T))
    (bn(u @ w.T) ** 3).sum().backward()
    grad_u = u.grad.clone()
    u.grad = None
    (bn(u @ (7.0 * w).T) ** 3).sum().backward()
    torch.testing.assert_close(u.grad, grad_u)


@pytest.mark.parametrize("kind", list(SHAPES))
def test_state_dict_loads_into_torch_batchnorm_and_back(kind):
    ours, theirs, shape = pair(kind)
    for step in range(3):
        ours(batch(shape, step))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    fresh_torch = SHAPES[kind][1](shape[1]).double()
    fresh_torch.load_state_dict(ours.state_dict())                      # strict, ours -> torch
    fresh_ours = SHAPES[kind][0](shape[1]).double()
    fresh_ours.load_state_dict(fresh_torch.state_dict())                # strict, torch -> ours
    x = batch(shape, 7)
    for bn in (ours, fresh_torch, fresh_ours):
        bn.eval()
    torch.testing.assert_close(fresh_torch(x), ours(x))
    torch.testing.assert_close(fresh_ours(x), ours(x))


def test_drop_in_for_torch_batchnorm_in_a_resnet():
    torch.manual_seed(0)
    theirs = CifarResNet(8, num_classes=10, in_chans=1, width=4).double()
    ours = CifarResNet(8, num_classes=10, in_chans=1, width=4, norm_layer=BatchNorm2d).double()
    ours.load_state_dict(theirs.state_dict())                           # strict: the same keys and shapes
    x = batch((6, 1, 12, 12), 0)
    torch.testing.assert_close(ours(x), theirs(x))                      # training mode, and both update their stats
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("path", ["forward", "reference_forward"])
def test_a_batch_of_one_in_training_raises_a_value_error_like_torch(path):
    x = torch.randn(1, 4)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        getattr(BatchNorm1d(4), path)(x)
    with pytest.raises(ValueError):
        torch.nn.BatchNorm1d(4)(x)
    assert BatchNorm1d(4)(torch.randn(1, 4, 3)).shape == (1, 4, 3)      # one sample, three values per channel
    assert BatchNorm1d(4).eval()(x).shape == (1, 4)                     # inference needs no batch


@pytest.mark.parametrize("layer, shape, expected", [
    (BatchNorm1d(4), (8, 3), "(B, C=4, ...)"), (BatchNorm1d(4), (8, 4, 2, 2), "(B, C=4) or (B, C=4, L)"),
    (BatchNorm2d(4), (8, 3, 5, 5), "(B, C=4, H, W)"), (BatchNorm2d(4), (8, 4, 5), "(B, C=4, H, W)"),
])
def test_bad_input_raises_a_value_error_naming_both_shapes(layer, shape, expected):
    with pytest.raises(ValueError) as e:
        layer(torch.randn(*shape))
    assert expected in str(e.value) and str(tuple(shape)) in str(e.value)


def test_bad_constructor_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(4, momentum=1.5)
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm1d(0)


# ----------------------------------------------------------------------------- the Sec. 4.1 network


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mnist_networks_have_the_sec41_parameter_counts():
    plain, bn = archzoo.create_model("mnist_mlp"), archzoo.create_model("mnist_mlp_bn")
    assert n_params(plain) == (784 * 100 + 100) + 2 * (100 * 100 + 100) + (100 * 10 + 10) == 99_710
    assert n_params(bn) == 99_710 - 3 * 100 + 3 * 2 * 100 == 100_010      # biases dropped, gamma and beta added
    assert sum(isinstance(m, BatchNorm1d) for m in bn.modules()) == 3
    assert not any(isinstance(m, BatchNorm1d) for m in plain.modules())


def test_bn_sigmoid_inputs_are_normalised_in_training():
    torch.manual_seed(0)
    model = archzoo.create_model("mnist_mlp_bn").double()
    with torch.no_grad():
        for bn in model.norms:
            bn.weight.fill_(2.0), bn.bias.fill_(-1.0)
        inputs = model.sigmoid_inputs(torch.rand(32, 1, 28, 28, dtype=torch.float64))
    for s in inputs:                                                    # gamma x_hat + beta per unit
        torch.testing.assert_close(s.mean(0), torch.full((100,), -1.0, dtype=torch.float64))
        torch.testing.assert_close(s.std(0, unbiased=False), torch.full((100,), 2.0, dtype=torch.float64),
                                   rtol=1e-3, atol=1e-3)


def test_population_statistics_are_algorithm2_averages_of_the_training_network_whatever_came_before():
    from archzoo.papers.batch_norm.batch_norm import estimate_population_statistics

    torch.manual_seed(0)
    model = archzoo.create_model("mnist_mlp_bn", img_size=4).double()
    model(torch.rand(8, 1, 4, 4, dtype=torch.float64) * 5)                # running statistics to be forgotten
    xs = [torch.rand(6, 1, 4, 4, dtype=torch.float64) + s for s in range(3)]
    first, second = model.norms[0], model.norms[1]
    with torch.no_grad():                                               # layer 2 sees layer 1 normalised per batch
        h1 = [model.linears[0](x.flatten(1)) for x in xs]
        h2 = [model.linears[1](torch.sigmoid(first.reference_forward(h))) for h in h1]
    assert estimate_population_statistics(model, xs) is model and not model.training
    for bn, hs in ((first, h1), (second, h2)):
        torch.testing.assert_close(bn.running_mean, torch.stack([h.mean(0) for h in hs]).mean(0))
        torch.testing.assert_close(bn.running_var, torch.stack([h.var(0) for h in hs]).mean(0))   # m/(m-1) sigma^2
        assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == len(xs)


def test_drift_is_the_range_of_each_percentile_over_training_mean_over_percentiles_and_units():
    from archzoo.papers.batch_norm.claims import drift

    steady = np.zeros((5, 3, 2))
    moving = steady.copy()
    moving[:, :, 0] = np.arange(5)[:, None]                              # unit 0's percentiles move by 4 in all
    moving[2, 1, 1] = -1.0                                               # unit 1's median dips by 1 once
    assert drift(steady) == 0.0 and drift(moving) == pytest.approx((3 * 4 + 1) / 6)
    assert drift(moving, start=3) == pytest.approx(1 / 2)


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = archzoo.create_model("mnist_mlp_bn")
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(), loss.backward(), opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_layers_and_presets_are_registered_under_the_paper():
    paper = archzoo.get_paper("batch_norm")
    assert {"BatchNorm1d", "BatchNorm2d"} <= set(paper.layers)
    assert {"mnist_mlp", "mnist_mlp_bn"} <= set(paper.models)


def test_steps_to_target_needs_the_running_mean_of_three_evaluations_to_reach_it():
    from archzoo.papers.batch_norm.claims import running_mean, steps_to

    assert running_mean([60.0, 90.0, 60.0, 90.0]) == [60.0, 75.0, 70.0, 80.0]
    run = {"step": [0, 25, 50, 75], "accuracy": [60.0, 90.0, 60.0, 90.0]}   # one lucky evaluation is not enough
    assert steps_to(run, 78.0, cap=100) == 75 and steps_to(run, 85.0, cap=100) == 100


def test_quick_fewer_steps_claim_sweeps_the_plain_lr_and_targets_the_plain_maximum(quick_claim):
    m = quick_claim("batch_norm", "fewer_steps_to_target")["metrics"]
    assert set(m["lr_sweep_val_plateau"]) == {"0.03"} and m["lr"]["bn_x5"] == 5 * m["lr"]["plain"]
    assert m["target_accuracy"] == pytest.approx(sum(m["plain_max_per_seed"]) / len(m["plain_max_per_seed"]))
    assert m["halve_every"]["bn_x5"] < m["halve_every"]["plain"]
