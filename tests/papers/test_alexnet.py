"""AlexNet (Krizhevsky, Sutskever & Hinton 2012): parameter count, LRN, two-GPU groups, pooling, init, the claim."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.papers.alexnet import AlexNet, LocalResponseNorm
from archzoo.papers.alexnet.claims import error_loss, fig1_net, init_for_activation, running_error, steps_to


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_alexnet_has_the_parameter_count_of_the_papers_layer_table():
    """Sec. 3.5 / Fig. 2, weights + biases layer by layer; conv2, conv4 and conv5 see only their own GPU's half
    of the previous layer's maps (fan-in halved), conv3 and the fully connected layers see all of them:

        conv1  96 x (11*11*3)   + 96   =     34,848 +   96 =     34,944
        conv2 256 x (5*5*48)    + 256  =    307,200 +  256 =    307,456
        conv3 384 x (3*3*256)   + 384  =    884,736 +  384 =    885,120
        conv4 384 x (3*3*192)   + 384  =    663,552 +  384 =    663,936
        conv5 256 x (3*3*192)   + 256  =    442,368 +  256 =    442,624
        fc6  4096 x (256*6*6)   + 4096 = 37,748,736 + 4096 = 37,752,832
        fc7  4096 x 4096        + 4096 = 16,777,216 + 4096 = 16,781,312
        fc8  1000 x 4096        + 1000 =  4,096,000 + 1000 =  4,097,000
                                                       total 60,965,224  ("60 million parameters", Sec. 4)
    """
    model = archzoo.create_model("alexnet")
    per_layer = {name: n_params(m) for name, m in [*model.features.named_children(),
                                                  *model.pre_logits.named_children(), ("fc8", model.fc8)]
                 if n_params(m)}
    assert per_layer == {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936, "conv5": 442_624,
                         "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000}
    assert n_params(model) == 60_965_224
    # on one GPU (groups=1) conv2, conv4 and conv5 would see all the maps: their weights double
    assert n_params(AlexNet(groups=1)) - n_params(model) == 256 * 48 * 5 * 5 + 384 * 192 * 3 * 3 + 256 * 192 * 3 * 3


def test_alexnet_small_parameter_count():
    # conv 624 + 19,264 + 55,392 + 41,568 + 27,712; fc6 256*512+512, fc7 512*512+512, fc8 512*10+10
    assert n_params(archzoo.create_model("alexnet_small")) == 543_930


def lrn_by_the_formula(a: torch.Tensor, n: int, k: float, alpha: float, beta: float) -> torch.Tensor:
    """Sec. 3.3 term by term: b^i = a^i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} (a^j)^2)^beta."""
    N = a.shape[1]
    b = torch.empty_like(a)
    for i in range(N):
        energy = sum(a[:, j] ** 2 for j in range(max(0, i - n // 2), min(N - 1, i + n // 2) + 1))
        b[:, i] = a[:, i] / (k + alpha * energy) ** beta
    return b


@pytest.mark.parametrize("n, k, alpha, beta", [(5, 2.0, 1e-4, 0.75), (3, 1.0, 0.1, 0.5)])
def test_local_response_norm_is_the_formula_of_sec_3_3(n, k, alpha, beta):
    torch.manual_seed(0)
    a = F.relu(30 * torch.randn(2, 7, 4, 3, dtype=torch.float64))       # large enough that alpha * sum matters
    b = LocalResponseNorm(n, alpha=alpha, beta=beta, k=k)(a)
    torch.testing.assert_close(b, lrn_by_the_formula(a, n, k, alpha, beta), rtol=1e-12, atol=0)
    assert (b - a / k ** beta).abs().max() > 1e-3                      # the neighbours' energy did change b


def test_torch_local_response_norm_divides_alpha_by_n():
    a = F.relu(30 * torch.randn(2, 16, 5, 5, dtype=torch.float64))
    ours = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a)
    torch.testing.assert_close(torch.nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)(a), ours)
    assert not torch.allclose(torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a), ours)


def test_local_response_norm_needs_an_odd_window():
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNorm(4)


@pytest.mark.parametrize("layer, grouped", [("conv2", True), ("conv3", False), ("conv4", True), ("conv5", True)])
def test_two_gpu_connectivity_sec_3_2(layer, grouped):
    # A kernel on GPU 1 sees only GPU 1's maps of the previous layer in conv2, conv4 and conv5 (Fig. 2).
    torch.manual_seed(0)
    conv = getattr(archzoo.create_model("alexnet_small").features, layer)
    x = torch.randn(2, conv.in_channels, 6, 6)
    x2 = x.clone()
    x2[:, conv.in_channels // 2:] += torch.randn_like(x2[:, conv.in_channels // 2:])   # perturb GPU 2's maps
    y, y2 = conv(x), conv(x2)
    half = conv.out_channels // 2
    assert not torch.allclose(y[:, half:], y2[:, half:])                               # GPU 2's kernels see them
    assert torch.equal(y[:, :half], y2[:, :half]) == grouped                           # GPU 1's only if not grouped


def test_pooling_overlaps_sec_3_4_and_gives_the_map_sizes_of_fig_2():
    model = archzoo.create_model("alexnet")
    pools = [model.features.pool1, model.features.pool2, model.features.pool5]
    assert all((p.kernel_size, p.stride) == (3, 2) for p in pools)                    # z = 3 > s = 2
    spike = torch.zeros(1, 1, 5, 5)
    spike[0, 0, 2, 2] = 1.0                                      # a pixel shared by the 4 windows that cover it
    assert pools[0](spike).sum() == 4
    sizes = {}
    for name in ("conv1", "pool1", "pool2", "conv5", "pool5"):
        getattr(model.features, name).register_forward_hook(lambda m, i, o, name=name: sizes.update({name: o.shape}))
    with torch.no_grad():
        model(torch.randn(1, 3, 227, 227))
    assert {k: tuple(v[1:]) for k, v in sizes.items()} == {
        "conv1": (96, 55, 55), "pool1": (96, 27, 27), "pool2": (256, 13, 13), "conv5": (256, 13, 13),
        "pool5": (256, 6, 6)}


def test_default_initialisation_is_sec_5():
    torch.manual_seed(0)
    model = archzoo.create_model("alexnet_small", num_classes=1000)
    layers = {**dict(model.features.named_children()), **dict(model.pre_logits.named_children()), "fc8": model.fc8}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.equal(layers[name].bias, torch.full_like(layers[name].bias, bias)), name
    w = model.pre_logits.fc7.weight.detach()                                             # 262,144 draws
    assert abs(float(w.std()) - 0.01) < 1e-4 and abs(float(w.mean())) < 1e-4


def test_dropout_sits_after_fc6_and_fc7_and_only_in_training():
    model = archzoo.create_model("alexnet_small")
    drops = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == ["pre_logits.drop6", "pre_logits.drop7"] and model.pre_logits.drop6.p == 0.5
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_activation_option():
    tanh = archzoo.create_model("alexnet_small", activation="tanh")
    kinds = {type(m) for m in tanh.modules()}
    assert torch.nn.Tanh in kinds and torch.nn.ReLU not in kinds
    with pytest.raises(ValueError, match="activation"):
        archzoo.create_model("alexnet_small", activation="sigmoid")


def test_the_papers_224_pixel_images_do_not_fit_fc6():
    with pytest.raises(ValueError, match=r"expected shape \(B, C=3, H=227, W=227\), got \(1, 3, 224, 224\)"):
        archzoo.create_model("alexnet")(torch.rand(1, 3, 224, 224))
    with pytest.raises(ValueError, match="too small"):
        AlexNet(img_size=32)                                   # 11x11/4 conv1 and three 3/2 pools leave nothing


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = init_for_activation(archzoo.create_model("alexnet_small", dropout=0.0), "relu")
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(20):
        loss, metrics = error_loss(model, (x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0] and metrics["error"] <= 25     # from chance (2.30, 90%)


def test_running_error_and_steps_to_threshold():
    errors = [90.0, 50.0, 30.0, 20.0, 10.0, 40.0]
    curve = running_error([{"error": e} for e in errors], window=2)
    np.testing.assert_allclose(curve, [90, 70, 40, 25, 15, 25])
    assert steps_to(curve, 25.0, window=2) == 4
    assert steps_to(curve, 5.0, window=2) is None
    assert steps_to(running_error([{"error": 20.0}, {"error": 90.0}], window=2), 25.0, window=2) is None  # full window


def test_fig1_net_is_four_layers_with_the_gain_of_its_nonlinearity():
    """conv 1->32, 32->32, 32->64 (5x5) and a linear layer on the 64 x 2 x 2 map left after three 3/2 pools:
    832 + 25,632 + 51,264 + 2,570 = 80,298 parameters; weights N(0, gain^2 / fan_in), biases 0."""
    torch.manual_seed(0)
    for act, gain in (("relu", 2 ** 0.5), ("tanh", 5 / 3)):
        net = fig1_net(act)
        layers = [m for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(layers) == 4 and n_params(net) == 80_298
        assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
        conv2 = layers[1]
        std = gain / (32 * 5 * 5) ** 0.5
        assert abs(conv2.weight.std().item() / std - 1) < 0.02 and not any(m.bias.any() for m in layers)
    with pytest.raises(ValueError, match="activation must be one of"):
        fig1_net("sigmoid")


def test_quick_claim_metrics_follow_the_criterion(quick_claim):
    record = quick_claim("alexnet", "relu_trains_faster_than_tanh")      # run once (tests/test_claims_quick.py)
    m, cfg = record["metrics"], record["config"]
    for act in ("relu", "tanh"):
        assert all(1 <= s <= cfg["steps"] for s in m["steps_to_threshold_per_seed"][act])
        assert len(m["steps_to_threshold_per_seed"][act]) == cfg["seeds"]
        assert len(m["running_error_curves"][act][0]) == cfg["steps"]
        sweep = m["sweep_steps_to_threshold_seed0"][act]                  # the chosen rate is the fastest on seed 0
        assert m["best_lr"][act] in cfg["lrs"] and sweep[str(m["best_lr"][act])] == min(sweep.values())
        assert m["steps_to_threshold_per_seed"][act][0] == sweep[str(m["best_lr"][act])]
    assert record["passed"] == (m["steps_to_threshold"]["relu"] <= m["steps_to_threshold"]["tanh"] / 3)
