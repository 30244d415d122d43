"""Involution (Li et al. 2021, arXiv:2103.06255): Eq. 4-6 against a naive loop, location-specific kernels shared
within a group, stride, RedNet parameter counts and multiply-adds (Table 2), interfaces, the claim."""


import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.papers.involution import CifarRedNet, Involution, RedNetBottleneck, count_macs
from archzoo.papers.resnet import Bottleneck


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomized(module: torch.nn.Module) -> torch.nn.Module:
    """float64, eval mode, with non-trivial BN statistics so that sigma in Eq. 6 is not the identity + ReLU."""
    torch.manual_seed(0)
    module = module.double().eval()
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2), m.bias.data.uniform_(-0.5, 0.5)
    return module


def naive_involution(inv: Involution, x: torch.Tensor) -> torch.Tensor:
    """Eq. 4 term by term: Y[i,j,k] = sum_{u,v} H[i,j,u+K//2,v+K//2, group(k)] X[i s + u, j s + v, k]."""
    k, s, (b, c, height, width) = inv.kernel_size, inv.stride, x.shape
    pooled = F.avg_pool2d(x, s, s, ceil_mode=True) if s > 1 else x                  # X_{Psi_ij} for stride s
    h = inv.span(inv.sigma(inv.reduce(pooled)))                                     # Eq. 6, (B, K*K*G, H', W')
    h = h.view(b, inv.groups, k, k, *h.shape[-2:])
    group = torch.arange(c) // (c // inv.groups)                                    # ceil(kG/C), 0-based
    y = x.new_zeros(b, c, *h.shape[-2:])
    for i in range(h.shape[-2]):
        for j in range(h.shape[-1]):
            for u in range(-(k // 2), k // 2 + 1):
                for v in range(-(k // 2), k // 2 + 1):
                    r, q = i * s + u, j * s + v
                    if 0 <= r < height and 0 <= q < width:                          # zero padding outside
                        y[:, :, i, j] += h[:, group, u + k // 2, v + k // 2, i, j] * x[:, :, r, q]
    return y


@pytest.mark.parametrize("kernel_size, stride, size", [(3, 1, 6), (5, 1, 5), (3, 2, 6), (7, 2, 7)])
def test_involution_equals_the_naive_loop_of_eq4_in_float64(kernel_size, stride, size):
    inv = randomized(Involution(32, kernel_size, stride, group_channels=16, reduction=4))
    x = torch.randn(2, 32, size, size, dtype=torch.float64)
    torch.testing.assert_close(inv(x), naive_involution(inv, x))


def test_kernels_differ_by_location_and_are_shared_by_the_channels_of_a_group():
    # Groups 0 and 1 carry spatially constant images a_k and b_k, group 2 carries noise that varies the generated
    # kernels over space. Away from the border Y[i,j,k] = a_k * sum_{u,v} H[i,j,u,v,g]: the ratio Y/a_k is the same
    # for every channel of a group (one kernel per group), differs between groups, and differs between locations
    # (a convolution would give a constant image from a constant input).
    inv = randomized(Involution(48, 3, 1, group_channels=16, reduction=4))
    x = torch.randn(1, 48, 8, 8, dtype=torch.float64)
    a = torch.linspace(0.5, 2.0, 32, dtype=torch.float64)
    x[0, :32] = a.view(32, 1, 1).expand(32, 8, 8)
    ratio = (inv(x)[0, :32] / a.view(32, 1, 1))[:, 1:-1, 1:-1]                    # interior: the kernel sums
    torch.testing.assert_close(ratio[:16], ratio[:1].expand(16, 6, 6))             # shared within group 0
    torch.testing.assert_close(ratio[16:], ratio[16:17].expand(16, 6, 6))          # shared within group 1
    assert (ratio[0] - ratio[16]).abs().max() > 1e-3                                # groups have their own kernels
    assert ratio[0].std() > 1e-3                                                    # and they vary over space


def test_the_kernel_is_a_function_of_the_pixel_alone_eq6():
    # phi(X_{Psi_ij}) = phi(X_ij): changing a neighbour's features leaves the kernel at (i, j) unchanged.
    inv = randomized(Involution(16, 3, 1, group_channels=16))
    x = torch.randn(1, 16, 5, 5, dtype=torch.float64)
    x2 = x.clone()
    x2[0, :, 2, 3] += 1.0
    changed = (inv.kernel(x) - inv.kernel(x2)).abs().sum(dim=(0, 1, 2)) > 0         # (H', W')
    assert changed[2, 3] and changed.sum() == 1


def test_stride_generates_kernels_from_the_average_pooled_input_and_samples_every_s_pixels():
    strided = randomized(Involution(16, 3, stride=2, group_channels=16))
    dense = randomized(Involution(16, 3, stride=1, group_channels=16))
    dense.load_state_dict(strided.state_dict())                                    # the stride adds no parameters
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(strided.kernel(x), dense.kernel(F.avg_pool2d(x, 2)))
    assert strided(x).shape == (2, 16, 4, 4) and strided(x[..., :7, :7]).shape == (2, 16, 4, 4)


def test_involution_parameter_count_follows_eq6():
    c, k, g, r = 64, 7, 4, 4                                                       # C, K, G = C / 16, r
    assert n_params(Involution(c, k)) == c * c // r + 2 * c // r + (c // r + 1) * k * k * g


@pytest.mark.parametrize("name, count, table2, tol", [
    ("rednet26", 9_233_166, 9.23, 0.005), ("rednet38", 12_386_986, 12.39, 0.005),
    ("rednet50", 15_540_806, 15.54, 0.005), ("rednet101", 25_652_950, 25.65, 0.005),
    ("rednet152", 33_984_582, 33.99, 0.006),          # rounds to 33.98M: 5.4k (0.02%) below Table 2's 33.99M
])
def test_rednet_presets_match_table2_parameter_counts(name, count, table2, tol):
    with torch.device("meta"):
        model = archzoo.create_model(name)
    assert n_params(model) == count
    assert abs(count / 1e6 - table2) <= tol             # Table 2 gives millions to two decimals


def test_a_fresh_rednet_starts_with_every_block_as_its_shortcut_and_stays_finite_in_eval_mode():
    torch.manual_seed(0)
    model = archzoo.create_model("rednet26").eval()           # the authors' init: zero_init_residual, zero biases
    blocks = [m for m in model.modules() if isinstance(m, RedNetBottleneck)]
    assert all(torch.count_nonzero(b.bn3.weight) == 0 and torch.count_nonzero(b.conv2.span.bias) == 0 for b in blocks)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()
        old = archzoo.create_model("rednet26", zero_init_residual=False).eval()
        assert not torch.isfinite(old(x)).all()               # involution is quadratic: activations square per block


def test_rednet50_has_the_papers_multiply_adds_and_fewer_than_resnet50():
    with torch.device("meta"):
        rednet, resnet = archzoo.create_model("rednet50"), archzoo.create_model("resnet50")
    macs = count_macs(rednet, (3, 224, 224), device="meta")
    assert abs(macs / 2.61e9 - 1) < 0.03                                           # Table 2: 2.61G
    assert macs < 0.7 * count_macs(resnet, (3, 224, 224), device="meta")           # ResNet-50: 4.1G


def test_count_macs_adds_k2_per_output_element_for_the_involution():
    inv = Involution(16, 7, group_channels=16, reduction=4)
    expected = 16 * 4 * 10 * 10 + 4 * 49 * 10 * 10 + 16 * 10 * 10 * 49             # W_0, W_1, Eq. 4
    assert count_macs(inv, (16, 10, 10)) == expected


def test_rednet_block_differs_from_the_resnet_bottleneck_only_in_its_middle_layer():
    red, res = RedNetBottleneck(256, 64), Bottleneck(256, 64)
    outside = lambda m: {k: v.shape for k, v in m.state_dict().items() if not k.startswith("conv2.")}  # noqa: E731
    assert outside(red) == outside(res)
    assert isinstance(red.conv2, Involution) and red.conv2.kernel_size == 7 and red.conv2.groups == 4


def test_cifar_twins_differ_only_in_the_middle_layer_and_rednet_is_smaller():
    red, res = CifarRedNet(11, 10, 1, 16), CifarRedNet(11, 10, 1, 16, involution=False)
    keys = lambda m: {k for k in m.state_dict() if ".conv2." not in k}  # noqa: E731
    assert keys(red) == keys(res)
    assert n_params(red) < n_params(res) and count_macs(red, (1, 28, 28)) < count_macs(res, (1, 28, 28))


def test_a_small_rednet_fits_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = CifarRedNet(11, num_classes=4, in_chans=1, width=16, stem_stride=2)
    x, y = torch.rand(16, 1, 16, 16), torch.arange(16) % 4
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = fixed_batch_losses(lambda: F.cross_entropy(model(x), y), opt, 25)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("shape", [(2, 8, 6, 6), (16, 6, 6)])
def test_bad_input_raises_a_value_error_naming_both_shapes(shape):
    with pytest.raises(ValueError) as e:
        Involution(16, 3)(torch.randn(*shape))
    assert "(B, C=16, H, W)" in str(e.value) and str(tuple(shape)) in str(e.value)


def test_bad_configuration_raises_a_value_error():
    with pytest.raises(ValueError, match="odd"):
        Involution(16, 4)
    with pytest.raises(ValueError, match="divisible"):
        Involution(24, 3, group_channels=16)
    with pytest.raises(ValueError, match="9n\\+2"):
        CifarRedNet(depth=14)


def test_every_preset_is_registered_under_the_paper():
    presets = {f"rednet{d}" for d in (26, 38, 50, 101, 152)}
    assert set(archzoo.get_paper("involution").models) == presets
    assert "Involution" in archzoo.get_paper("involution").layers


def test_quick_rednet_vs_resnet_claim_compares_a_smaller_rednet(quick_claim):
    record = quick_claim("involution", "rednet_vs_resnet")               # run once (tests/test_claims_quick.py)
    assert record["metrics"]["params"]["rednet"] < record["metrics"]["params"]["resnet"]
