"""NFNets (Brock et al. 2021, arXiv:2102.06171) and NF-ResNets (arXiv:2101.08692): Scaled WS, gamma, AGC, the
alpha/beta bookkeeping, parameter counts, interfaces and the claims."""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats

import archzoo
from archzoo.engine.schedules import warmup_schedule
from archzoo.engine.trainer import Trainer, supervised_step
from archzoo.papers.nfnet import (
    GAMMA,
    AdaptiveGradClip,
    NFBlock,
    NFNet,
    ScaledActivation,
    ScaledStdConv2d,
    adaptive_grad_clip_,
    signal_propagation,
    unitwise_norm,
)
from archzoo.papers.nfnet.claims import BNPreActResNet, largest_good_lr, nf_resnet
from archzoo.papers.nfnet.models import VARIANTS, expected_variances


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- Scaled WS and gamma


def test_scaled_ws_rows_have_zero_mean_and_variance_gain_squared_over_fan_in():
    torch.manual_seed(0)
    conv = ScaledStdConv2d(6, 8, 3, groups=2).double()
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(3.0)                                    # any scale and offset
        conv.gain.uniform_(0.5, 2.0)
    w = conv.standardized_weight()                                         # (8, 3, 3, 3), fan-in 27
    assert conv.fan_in == 27
    torch.testing.assert_close(w.mean(dim=(1, 2, 3)), torch.zeros(8, dtype=torch.float64), atol=1e-12, rtol=0)
    var = w.var(dim=(1, 2, 3), unbiased=False)
    torch.testing.assert_close(var, conv.gain.flatten() ** 2 / 27)


def test_scaled_ws_conv_is_conv2d_with_the_papers_standardized_weight():
    torch.manual_seed(0)
    conv = ScaledStdConv2d(4, 5, 3, stride=2).double()
    with torch.no_grad():
        conv.gain.uniform_(0.5, 2.0), conv.bias.uniform_(-1, 1)
    W = conv.weight
    mu = W.mean(dim=(1, 2, 3), keepdim=True)
    sigma = W.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    w_hat = conv.gain * (W - mu) / (sigma * math.sqrt(4 * 3 * 3))         # 2101.08692 Sec. 4.2
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(conv(x), F.conv2d(x, w_hat, conv.bias, stride=2, padding=1))


def test_gradients_flow_through_the_standardization_gradcheck():
    torch.manual_seed(0)
    conv = ScaledStdConv2d(4, 4, 3, groups=2).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)

    def f(x, weight, gain, bias):
        return torch.func.functional_call(conv, {"weight": weight, "gain": gain, "bias": bias}, (x,))

    args = (x, *(p.detach().clone().requires_grad_() for p in (conv.weight, conv.gain, conv.bias)))
    assert torch.autograd.gradcheck(f, args)


def test_scaled_ws_output_is_invariant_to_the_scale_and_shift_of_the_stored_weight():
    torch.manual_seed(0)
    conv = ScaledStdConv2d(3, 4, 3).double()
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    y = conv(x)
    with torch.no_grad():
        conv.weight.mul_(5.0).add_(-2.0)
    torch.testing.assert_close(conv(x), y)


@pytest.mark.parametrize("name", ["relu", "gelu", "silu"])
def test_gamma_gives_unit_variance_for_a_unit_gaussian_input(name):
    g = {"relu": lambda z: max(z, 0.0), "gelu": lambda z: z * stats.norm.cdf(z),
         "silu": lambda z: z / (1 + math.exp(-z))}[name]
    pdf = stats.norm.pdf
    m1 = integrate.quad(lambda z: g(z) * pdf(z), -30, 30)[0]
    m2 = integrate.quad(lambda z: g(z) ** 2 * pdf(z), -30, 30)[0]
    # ReLU's gamma is analytic (2101.08692 Sec. 4.3); GELU's and SiLU's are the authors' sampled estimates
    assert GAMMA[name] ** 2 * (m2 - m1 ** 2) == pytest.approx(1.0, abs=1e-12 if name == "relu" else 2e-3)


def test_a_scaled_ws_conv_after_a_gamma_scaled_relu_keeps_unit_variance():
    torch.manual_seed(0)
    conv, act = ScaledStdConv2d(256, 256, 1), ScaledActivation("relu")
    with torch.no_grad():
        y = conv(act(torch.randn(64, 256, 8, 8)))                          # no mean shift, unit variance
    assert abs(float(y.mean())) < 0.05 and float(y.var()) == pytest.approx(1.0, rel=0.1)


# ----------------------------------------------------------------------------- adaptive gradient clipping


def test_agc_clips_units_by_their_gradient_to_weight_ratio_hand_computed():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))        # row norms 5 and 0 (-> eps = 1e-3)
    w.grad = torch.tensor([[0.3, 0.4], [0.6, 0.8]])                        # row norms 0.5 and 1
    adaptive_grad_clip_([w], clipping=0.01, eps=1e-3)
    # row 0: 0.5 / 5 = 0.1 > 0.01 -> G * 0.01 * 5 / 0.5; row 1: 1 / 1e-3 > 0.01 -> G * 0.01 * 1e-3 / 1
    torch.testing.assert_close(w.grad, torch.tensor([[0.03, 0.04], [6e-6, 8e-6]]))
    assert unitwise_norm(w.grad)[0, 0] == pytest.approx(0.01 * 5)         # exactly lambda ||W_i|| afterwards


def test_agc_leaves_small_gradients_untouched_bit_for_bit():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [6.0, 8.0]]))
    g = torch.tensor([[3e-3, 4e-3], [-0.05, 0.05]])                        # ratios 0.001 and 0.0071 < 0.01
    w.grad = g.clone()
    adaptive_grad_clip_(w, clipping=0.01)
    assert torch.equal(w.grad, g)


def test_agc_treats_a_vector_as_one_unit_and_a_conv_kernel_per_output_channel():
    b = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    b.grad = torch.tensor([1.0, 0.0])                                      # 1 / 5 > 0.1
    adaptive_grad_clip_([b], clipping=0.1)
    torch.testing.assert_close(b.grad, torch.tensor([0.5, 0.0]))
    k = torch.randn(3, 2, 3, 3)
    assert unitwise_norm(k).shape == (3, 1, 1, 1)
    torch.testing.assert_close(unitwise_norm(k).flatten(), k.flatten(1).norm(dim=1))


def small_nfnet(seed: int = 0) -> NFNet:
    torch.manual_seed(seed)
    return archzoo.create_model("nfnet_small", drop_rate=0.0, stochdepth_rate=0.0)


def agc_trainer(model, data, *, steps: int, lr: float = 1.0, momentum: float = 0.0, **kw) -> Trainer:
    sgd = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0)
    return Trainer(model, sgd, warmup_schedule(sgd, steps=steps, warmup_steps=2), steps=steps, data=data,
                   batch_size=8, hooks=[AdaptiveGradClip(clipping=1e-4)], progress=False, **kw)


def test_agc_hook_equals_sgd_on_gradients_clipped_by_the_function_and_skips_the_classifier():
    model, reference = small_nfnet(), small_nfnet()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    agc_trainer(model, torch.utils.data.TensorDataset(x, y), steps=1).fit()    # one step on the batch (shuffled)
    F.cross_entropy(reference(x), y).backward()
    raw = {n: p.grad.clone() for n, p in reference.named_parameters()}
    adaptive_grad_clip_([p for n, p in reference.named_parameters() if not n.startswith("fc.")], clipping=1e-4)
    assert sum(not torch.equal(raw[n], p.grad) for n, p in reference.named_parameters()) > 10     # it clips
    torch.testing.assert_close(model.fc.weight.grad, raw["fc.weight"])              # the classifier is not clipped
    torch.optim.SGD(reference.parameters(), lr=1.0 / 2).step()                      # warm-up: step 1 of 2
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, msg=name)


def test_agc_hook_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    data = torch.utils.data.TensorDataset(torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    whole = small_nfnet()
    expected = agc_trainer(whole, data, steps=4, momentum=0.9).fit()

    calls = []

    def crash_after_two(net, batch):                                       # a process killed in step 3
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return F.cross_entropy(net(batch[0]), batch[1])

    with pytest.raises(KeyboardInterrupt):
        agc_trainer(small_nfnet(), data, steps=4, momentum=0.9, step=supervised_step(crash_after_two),
                    checkpoint_dir=tmp_path, checkpoint_every=2).fit()
    resumed = small_nfnet(seed=1)                                           # other weights: all state from the file
    result = agc_trainer(resumed, data, steps=4, momentum=0.9, checkpoint_dir=tmp_path).fit(resume=True)
    assert all(torch.equal(p, q) for p, q in zip(whole.parameters(), resumed.parameters()))
    assert result.history == expected.history


def test_agc_hook_trains_at_a_rate_where_plain_sgd_diverges():
    data = torch.utils.data.TensorDataset(torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,)))

    def fit(hooks):
        model = small_nfnet()
        sgd = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, nesterov=True)
        return Trainer(model, sgd, warmup_schedule(sgd, steps=15, warmup_steps=2), steps=15, data=data,
                       batch_size=16, hooks=hooks, progress=False).fit()

    with pytest.raises(FloatingPointError):                                # NaN loss within 15 steps without AGC
        fit(hooks=[])
    losses = [h["loss"] for h in fit(hooks=[AdaptiveGradClip()]).history]
    assert losses[-1] < 0.5 * losses[0]                                    # with it, it memorizes the batch at lr 1


def test_largest_good_lr_is_the_largest_rate_above_the_threshold():
    assert largest_good_lr({0.1: 90.0, 0.2: 50.0, 0.4: 91.0, 0.8: 0.0}, threshold=88.0) == 0.4
    assert largest_good_lr({0.1: 80.0}, threshold=88.0) is None


def test_agc_rejects_bad_arguments():
    with pytest.raises(ValueError, match="clipping"):
        adaptive_grad_clip_([torch.zeros(2, requires_grad=True)], clipping=0.0)
    with pytest.raises(ValueError, match="clipping"):
        AdaptiveGradClip(clipping=-0.01)
    model = BNPreActResNet((1,), (8,), strides=(1,))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=1, hooks=[AdaptiveGradClip()],
                      data=torch.utils.data.TensorDataset(torch.rand(2, 3, 8, 8)), batch_size=2, progress=False)
    with pytest.raises(ValueError, match="unclipped"):
        trainer.fit()                                                      # it has no `fc`


# ----------------------------------------------------------------------------- alpha / beta bookkeeping


def test_expected_variance_grows_by_alpha_squared_and_resets_at_transitions():
    assert expected_variances((2, 3), alpha=0.2) == pytest.approx([1.04, 1.08, 1.04, 1.08, 1.12])
    model = nf_resnet((2, 3), (16, 32), alpha=0.2, strides=(1, 2))
    betas = [b.beta for b in model.blocks]                                 # beta_i = sqrt(Var(h_i)), h_i the input
    assert betas == pytest.approx([1.0, math.sqrt(1.04), math.sqrt(1.08), math.sqrt(1.04), math.sqrt(1.08)])


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_residual_stream_variance_at_init_tracks_the_analytic_beta_squared(alpha):
    torch.manual_seed(0)
    model = nf_resnet((3, 3), (32, 64), alpha=alpha, strides=(1, 2))
    spp = signal_propagation(model, torch.randn(16, 3, 16, 16))
    ratio = torch.tensor(spp["variance"]) / torch.tensor(model.expected_variances)
    assert ratio.min() > 0.8 and ratio.max() < 1.2, ratio
    assert max(spp["squared_mean"]) < 0.05                                 # Scaled WS: no mean shift


def test_without_scaling_the_unnormalized_resnet_variance_explodes_and_bn_resets_it():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16)
    unnormalized = signal_propagation(nf_resnet((6, 6), (32, 64), alpha=1.0, ws=False, signal_scaling=False,
                                                strides=(1, 2)), x)
    bn = signal_propagation(BNPreActResNet((6, 6), (32, 64), strides=(1, 2)), x)
    assert unnormalized["variance"][-1] > 10 * bn["variance"][-1]           # geometric against linear growth
    assert bn["variance"][6] < 0.5 * bn["variance"][5]                      # reset at the transition


def test_with_a_zero_skip_gain_an_nfnet_block_is_its_shortcut():
    torch.manual_seed(0)
    block = NFBlock(32, 32, group_width=8, beta=1.3).double()            # skip_gain_init = 0 (NFNets)
    h = torch.randn(2, 32, 6, 6, dtype=torch.float64)
    assert torch.equal(block(h), h)
    with torch.no_grad():
        block.skip_gain.fill_(1.0)
    x = block.act(h) / 1.3
    torch.testing.assert_close(block(h), h + 0.2 * block.residual(x))    # h + alpha f(h / beta)


def test_transition_shortcut_pools_for_nfnets_and_strides_for_nf_resnets():
    torch.manual_seed(0)
    nfnet_block = NFBlock(16, 32, stride=2, group_width=8).double()
    h = torch.randn(1, 16, 8, 8, dtype=torch.float64)
    x = nfnet_block.act(h)
    torch.testing.assert_close(nfnet_block(h), nfnet_block.shortcut[1](F.avg_pool2d(x, 2)))
    nf_resnet_block = NFBlock(16, 32, stride=2, group_width=8, avg_down=False).double()
    conv = nf_resnet_block.shortcut                                        # a strided 1x1 conv keeps every 2nd pixel
    torch.testing.assert_close(nf_resnet_block(h), F.conv2d(x[:, :, ::2, ::2], conv.standardized_weight(), conv.bias))


# ----------------------------------------------------------------------------- presets


def test_presets_match_the_papers_parameter_counts():
    counts = {}
    for variant in ("f0", "f1", "f6"):
        with torch.device("meta"):                                         # no memory for F6's 438M parameters
            counts[variant] = n_params(archzoo.create_model(f"nfnet_{variant}"))
    assert counts == {"f0": 71_489_284, "f1": 132_634_256, "f6": 438_359_116}
    # Fn has (n+1) x [1, 2, 6, 3] blocks: the count is linear in n, one step = one more [1, 2, 6, 3] of blocks
    step = counts["f1"] - counts["f0"]
    assert counts["f6"] == counts["f0"] + 6 * step
    for n, variant in enumerate(VARIANTS):                                 # 71.5, 132.6, ..., 438.4 (Table 1)
        assert round((counts["f0"] + n * step) / 1e6, 1) == VARIANTS[variant][4]


@pytest.mark.reference
@pytest.mark.parametrize("variant", ["f0", "f3", "f6"])
def test_parameter_counts_equal_timms_dm_nfnet(variant):
    timm = pytest.importorskip("timm")                                     # needs a CUDA torch build here: skips
    with torch.device("meta"):
        assert n_params(archzoo.create_model(f"nfnet_{variant}")) == n_params(timm.create_model(f"dm_nfnet_{variant}"))


def test_nfnet_f0_follows_the_papers_design():
    with torch.device("meta"):
        model = archzoo.create_model("nfnet_f0")
    blocks = model.blocks
    assert [len(s) for s in model.stages] == [1, 2, 6, 3]
    assert [b.convs_3x3[0].groups for b in blocks] == [1, 2, 2] + [6] * 9      # bottleneck width / 128
    assert all(len(b.convs_3x3) == 2 and b.se.fc0.out_features == b.out_channels // 2 for b in blocks)
    assert [b.drop_path.rate for b in blocks] == pytest.approx([0.1 * i / 12 for i in range(12)])
    assert model.num_features == 3072 and model.dropout.p == 0.2
    assert model.default_input_size == (3, 192, 192) and model.test_input_size == (3, 256, 256)
    assert [m.out_channels for m in model.stem if isinstance(m, ScaledStdConv2d)] == [16, 32, 64, 128]


def test_nfnet_small_downsamples_to_one_pixel_and_classifies():
    model = archzoo.create_model("nfnet_small").eval()
    assert n_params(model) == 197_654
    with torch.no_grad():
        features = model.forward_features(torch.rand(2, 1, 28, 28))
    assert features.shape == (2, 256, 1, 1) and model.forward_head(features).shape == (2, 10)


def test_bad_configurations_raise_value_errors():
    with pytest.raises(ValueError, match="group_width"):
        NFBlock(32, 48, group_width=16)                                    # width 24 is not a multiple of 16
    with pytest.raises(ValueError, match="same length"):
        NFNet((1, 1), (32, 64, 128))
    with pytest.raises(ValueError, match="activation"):
        ScaledActivation("tanh")
    with pytest.raises(ValueError, match="C=4"):
        ScaledStdConv2d(4, 8, 3)(torch.rand(1, 3, 8, 8))


def test_every_preset_and_layer_is_registered_under_the_paper():
    paper = archzoo.get_paper("nfnet")
    assert set(paper.models) == {f"nfnet_f{i}" for i in range(7)} | {"nfnet_small"}
    assert {"ScaledStdConv2d", "NFBlock"} <= set(paper.layers)
    assert set(paper.claims) == {"signal_propagation_matches_batchnorm", "agc_large_batch"}


# ----------------------------------------------------------------------------- claims


@pytest.mark.parametrize("name", ["signal_propagation_matches_batchnorm", "agc_large_batch"])
def test_quick_claim_metrics(quick_claim, name):
    metrics = quick_claim("nfnet", name)["metrics"]                      # run once (tests/test_claims_quick.py)
    if name == "agc_large_batch":
        assert set(metrics["test_accuracy"]) == {"none", "agc", "clip"}
        assert set(metrics["mean_test_accuracy"]["agc"]) == {"0.05", "0.8"}     # one entry per swept lr
        assert metrics["trains_well_threshold"] == metrics["best_accuracy"]["none"] - 3.0
    else:
        assert len(metrics["nf_over_bn_variance"]) == 8
