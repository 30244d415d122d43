"""FixMatch (Sohn et al. 2020, arXiv:2001.07685): every augmentation op of Table 12 (identity at its neutral
magnitude, [0, 1] preserved, known outputs on hand-made images), Cutout and the weak flip-and-shift, the loss of
Eq. 2-4 (the mask is exactly confidence >= tau; no gradient through the pseudo-labels), the Trainer step with the
EMA hook resuming bit for bit, the WRN-28-2 preset and the claim."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import archzoo
from archzoo.core import CifarResNet
from archzoo.engine.hooks import EMA
from archzoo.engine.trainer import Trainer
from archzoo.papers.fixmatch import augment as A
from archzoo.papers.fixmatch.fixmatch import FixMatch, cosine_decay, fixmatch_loss, pseudo_labels


def images(b=4, c=1, h=9, w=9, seed=0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def levels(x: torch.Tensor) -> torch.Tensor:
    """Images on the 8-bit grid, as PIL's are."""
    return (x * 255).round() / 255


def const(v: float, b: int = 4) -> torch.Tensor:
    return torch.full((b,), float(v))


# ----------------------------------------------------------------------------- the ops of Table 12

NEUTRAL = {"Brightness": 1.0, "Color": 1.0, "Contrast": 1.0, "Sharpness": 1.0, "Rotate": 0.0, "ShearX": 0.0,
           "ShearY": 0.0, "TranslateX": 0.0, "TranslateY": 0.0, "Posterize": 8, "Identity": 0.0}


@pytest.mark.parametrize("name", sorted(NEUTRAL))
def test_each_op_is_the_identity_at_its_neutral_magnitude(name):
    x = levels(images(c=3))
    op = A.RANDAUGMENT_OPS[name][0]
    torch.testing.assert_close(op(x, const(NEUTRAL[name])), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(A.RANDAUGMENT_OPS))
@pytest.mark.parametrize("channels", [1, 3])
def test_each_op_keeps_images_in_the_unit_range_at_random_magnitudes_of_its_table_12_range(name, channels):
    x = images(b=64, c=channels, seed=1) ** 3                            # dark images with a few bright pixels
    x[:8] = x[:8].round()                                                  # and some that are only 0 and 1
    op, low, high = A.RANDAUGMENT_OPS[name]
    v = A.sample_magnitudes(name, 64, torch.Generator().manual_seed(2))
    assert float(v.min()) >= low and float(v.max()) <= high
    out = op(x, v)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_posterize_keeps_the_most_significant_bits():
    x = torch.tensor([183.0, 255.0, 15.0, 16.0]).view(1, 1, 1, 4) / 255      # 183 = 0b10110111
    for bits, expected in ((4, [176, 240, 0, 16]), (6, [180, 252, 12, 16]), (1, [128, 128, 0, 0])):
        out = A.posterize(x, const(bits, 1)) * 255
        torch.testing.assert_close(out.round(), torch.tensor(expected, dtype=torch.float32).view(1, 1, 1, 4))


def test_solarize_inverts_exactly_the_pixels_at_or_above_the_threshold():
    x = torch.tensor([0.2, 0.5, 0.7, 1.0]).view(1, 1, 1, 4)
    torch.testing.assert_close(A.solarize(x, const(0.5, 1)), torch.tensor([0.2, 0.5, 0.3, 0.0]).view(1, 1, 1, 4))
    torch.testing.assert_close(A.solarize(x, const(0.0, 1)), 1 - x)                        # T = 0: all inverted


def test_equalize_gives_a_flat_histogram():
    dark = torch.arange(64.0) / 255                                          # 64 distinct levels, all dark
    x = dark[torch.randperm(64, generator=torch.Generator().manual_seed(0))].view(1, 1, 8, 8)
    out = A.equalize(x, const(0, 1))
    torch.testing.assert_close(out.flatten().sort().values, torch.arange(64.0) / 63)     # spread evenly over [0, 1]
    two = torch.tensor([0.1] * 12 + [0.3] * 4).view(1, 1, 4, 4)               # two levels: the darkest -> 0
    torch.testing.assert_close(A.equalize(two, const(0, 1)).unique(), torch.tensor([0.0, 1.0]))
    flat = torch.full((1, 1, 4, 4), 0.4)
    torch.testing.assert_close(A.equalize(flat, const(0, 1)), flat)


def test_auto_contrast_stretches_each_channel_to_black_and_white():
    x = 0.2 + 0.4 * images(c=3)
    out = A.auto_contrast(x, const(0))
    torch.testing.assert_close(out.amin((2, 3)), torch.zeros(4, 3))
    torch.testing.assert_close(out.amax((2, 3)), torch.ones(4, 3))
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    torch.testing.assert_close(out, (x - lo) / (hi - lo))


def test_blend_ops_reach_their_degenerate_image_at_magnitude_zero():
    x = images(c=3)
    torch.testing.assert_close(A.brightness(x, const(0)), torch.zeros_like(x))
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(A.color(x, const(0)), luma[:, None].expand_as(x))
    torch.testing.assert_close(A.contrast(x, const(0)), luma.mean((1, 2)).view(4, 1, 1, 1).expand_as(x))
    smooth = F.conv2d(x, A.SMOOTH.expand(3, 1, 3, 3), groups=3)
    torch.testing.assert_close(A.sharpness(x, const(0))[..., 1:-1, 1:-1], smooth)
    torch.testing.assert_close(A.sharpness(x, const(0))[..., 0, :], x[..., 0, :])            # PIL keeps the border


def test_color_is_the_identity_on_grey_images():
    x = images(c=1)
    for factor in (0.0, 0.05, 0.5, 0.95):
        torch.testing.assert_close(A.color(x, const(factor)), x)


def test_translations_move_the_image_by_lambda_times_its_side():
    x = images(h=10, w=5)
    right = A.translate_x(x, const(0.4))                                   # 2 of 5 pixels
    torch.testing.assert_close(right[..., 2:], x[..., :-2], atol=1e-6, rtol=0)
    assert float(right[..., :2].abs().max()) == 0.0                       # filled with black
    down = A.translate_y(x, const(-0.3))                                   # 3 of 10 pixels up
    torch.testing.assert_close(down[..., :-3, :], x[..., 3:, :], atol=1e-6, rtol=0)


def test_rotate_by_90_degrees_turns_the_image_counter_clockwise():
    x = images(h=7, w=7)
    torch.testing.assert_close(A.rotate(x, const(90)), torch.rot90(x, 1, (-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(A.rotate(x, const(-90)), torch.rot90(x, -1, (-2, -1)), atol=1e-5, rtol=0)


def test_shears_keep_the_central_row_or_column_and_move_the_others():
    x = torch.zeros(1, 1, 5, 5)
    x[..., 2, :] = 1.0                                                     # the centre row
    torch.testing.assert_close(A.shear_x(x, const(0.3, 1)), x, atol=1e-6, rtol=0)
    y = x.transpose(-1, -2)                                                # the centre column
    torch.testing.assert_close(A.shear_y(y, const(-0.3, 1)), y, atol=1e-6, rtol=0)
    dot = torch.zeros(1, 1, 5, 5)
    dot[..., 0, 2] = 1.0                                                   # two rows above the centre
    moved = A.shear_x(dot, const(0.5, 1))                                  # x_in = x + 0.5 y: shows it 1 px right
    assert float(moved[..., 0, 3]) == pytest.approx(1.0, abs=1e-5)


def test_cutout_greys_out_exactly_one_square_of_the_given_side():
    x = torch.zeros(64, 1, 28, 28)
    out = A.cutout(x, torch.full((64,), 0.25), torch.Generator().manual_seed(0))    # 7 x 7 squares
    inside = out == 0.5
    assert torch.equal(out[~inside], x[~inside])
    rows, cols = inside.any(3).sum((1, 2)), inside.any(2).sum((1, 2))     # the square's height and width
    assert int(rows.max()) == 7 and int(cols.max()) == 7
    assert torch.equal(inside.sum((1, 2, 3)), rows * cols)                # a (clipped) rectangle, not a blob


def test_weak_augmentation_is_a_flip_and_a_shift_of_at_most_an_eighth_of_the_side():
    x = images(b=16, h=16, w=16, seed=3)
    out = A.weak_augment(x, torch.Generator().manual_seed(4))
    padded = F.pad(torch.cat([x, x.flip(-1)], 1), (2, 2, 2, 2), mode="reflect")   # 12.5% of 16 = 2 pixels
    flips = set()
    for i in range(16):
        matches = [(f, dy, dx) for f in (0, 1) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i, 0], padded[i, f, dy:dy + 16, dx:dx + 16])]
        assert matches, f"image {i} is no flip-and-shift of its input"
        flips.add(matches[0][0])
    assert flips == {0, 1}


def test_augmentations_are_functions_of_their_generator():
    x = images(b=32, h=12, w=12)
    a = A.strong_augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, A.strong_augment(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, A.strong_augment(x, torch.Generator().manual_seed(6)))
    assert torch.equal(A.rand_augment(x, torch.Generator(), ops=["Identity"]), x)


def test_augmentations_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got \(3, 8, 8\)"):
        A.weak_augment(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"one per image, shape \(4,\), got \(3,\)"):
        A.rotate(images(), torch.zeros(3))
    with pytest.raises(ValueError, match="bits in 1..8"):
        A.posterize(images(), const(9))


# ----------------------------------------------------------------------------- the loss, Eq. 2-4


def test_the_mask_is_exactly_confidence_at_or_above_tau():
    p = torch.tensor([0.95, 0.9499, 0.9501, 0.5, 1.0], dtype=torch.float64)
    logits = torch.stack([p.log(), (1 - p).clamp_min(1e-300).log()], 1)   # softmax gives back (p, 1 - p)
    label, mask = pseudo_labels(logits, 0.95)
    confidence = logits.softmax(-1).max(-1).values
    assert torch.equal(mask, confidence >= 0.95) and mask.tolist()[1:] == [False, True, False, True]
    assert torch.equal(label, torch.tensor([0, 0, 0, 0, 0]))
    torch.manual_seed(0)
    logits = 4 * torch.randn(200, 10)
    for tau in (0.0, 0.5, 0.95, 1.0):
        assert torch.equal(pseudo_labels(logits, tau)[1], logits.softmax(-1).max(-1).values >= tau)


def test_the_unlabelled_loss_is_the_masked_cross_entropy_averaged_over_all_mu_b_images():
    torch.manual_seed(0)
    lx, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    weak, strong = 3 * torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 3, dtype=torch.float64)
    loss, metrics = fixmatch_loss(lx, y, weak, strong, threshold=0.9, lambda_u=2.0)
    q = weak.softmax(-1)
    keep = q.max(-1).values >= 0.9
    assert 0 < int(keep.sum()) < 12
    loss_u = sum(F.cross_entropy(strong[i:i + 1], q[i:i + 1].argmax(-1)) for i in range(12) if keep[i]) / 12
    torch.testing.assert_close(loss, F.cross_entropy(lx, y) + 2.0 * loss_u)
    assert metrics["mask_rate"] == pytest.approx(float(keep.double().mean()))
    assert metrics["pseudo_label_count"] == int(keep.sum())


def test_no_gradient_flows_through_the_pseudo_labels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, u_weak, u_strong = (torch.randn(n, 5, dtype=torch.float64) for n in (4, 8, 8))
    y = torch.tensor([0, 1, 2, 0])
    logits = net(torch.cat([x, 4 * u_weak, u_strong]))                    # one pass, as the step does
    lx, lw, ls = logits.split([4, 8, 8])
    tau = float(lw.detach().softmax(-1).max(-1).values.median())                # about half the images are confident
    assert 0 < int(pseudo_labels(lw, tau)[1].sum()) < 8
    loss, _ = fixmatch_loss(lx, y, lw, ls, threshold=tau)
    grads = torch.autograd.grad(loss, [lw, *net.parameters()], allow_unused=True, materialize_grads=True)
    assert float(grads[0].abs().max()) == 0.0                             # d loss / d(weak logits) = 0
    constant, _ = fixmatch_loss(net(x), y, net(4 * u_weak).detach(), net(u_strong), threshold=tau)
    for g, g_const in zip(grads[1:], torch.autograd.grad(constant, list(net.parameters()))):
        torch.testing.assert_close(g, g_const)


def test_the_loss_checks_its_shapes_and_tau():
    with pytest.raises(ValueError, match=r"\(B, K\), \(mu B, K\)"):
        fixmatch_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="tau must be in"):
        FixMatch(threshold=1.5)


def test_cosine_decay_is_the_papers_cos_7_pi_k_over_16_k():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.03)
    schedule, lrs = cosine_decay(opt, 100), []
    for _ in range(101):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.03) and lrs[50] == pytest.approx(0.03 * math.cos(7 * math.pi / 32))
    assert lrs[100] == pytest.approx(0.03 * math.cos(7 * math.pi / 16))


# ----------------------------------------------------------------------------- the Trainer step with EMA


def toy_fixmatch(steps=6, seed=0, **kw):
    torch.manual_seed(seed)
    net = CifarResNet(8, num_classes=3, in_chans=1, width=2)
    g = torch.Generator().manual_seed(1)
    data = {"labeled": TensorDataset(torch.rand(6, 1, 8, 8, generator=g), torch.arange(6) % 3),
            "unlabeled": TensorDataset(torch.rand(40, 1, 8, 8, generator=g), torch.arange(40) % 3)}
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    ema = EMA("model", decay=0.9)
    trainer = Trainer(net, opt, cosine_decay(opt, steps), steps=steps, step=FixMatch(threshold=0.4), data=data,
                      batch_size={"labeled": 2, "unlabeled": 6}, hooks=[ema], seed=3, progress=False, **kw)
    return trainer, ema


class Crash(Exception):
    pass


def test_a_fixmatch_run_with_ema_resumed_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    straight, straight_ema = toy_fixmatch()
    straight.fit()
    assert any(h["mask_rate"] > 0 for h in straight.history)                # the unlabelled loss was used
    crashed, _ = toy_fixmatch(checkpoint_dir=tmp_path, checkpoint_every=3)
    step = crashed.step_fn
    crashed.step_fn = lambda tr, b: (_ for _ in ()).throw(Crash) if tr.step == 4 else step(tr, b)
    with pytest.raises(Crash):
        crashed.fit()
    resumed, resumed_ema = toy_fixmatch(seed=9, checkpoint_dir=tmp_path)  # other initial weights: all from disk
    resumed.fit(resume=True)
    for a, b in ((straight.models["model"], resumed.models["model"]), (straight_ema.module, resumed_ema.module)):
        for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), k
    assert resumed_ema.updates == 6 and resumed.history == straight.history


def test_without_an_unlabelled_stream_the_step_is_supervised_on_weak_views():
    trainer, _ = toy_fixmatch(steps=2)
    trainer.streams.pop("unlabeled")
    history = trainer.fit().history
    assert set(history[0]) >= {"loss", "loss_s"} and "loss_u" not in history[0]


# ----------------------------------------------------------------------------- the preset and the claim


def test_wrn28_2_has_the_papers_1_5_million_parameters():
    model = archzoo.create_model("wrn28_2")
    assert sum(p.numel() for p in model.parameters()) == 1_467_610
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)



def test_quick_claim_runs_and_reports_every_arm(quick_claim):
    metrics = quick_claim("fixmatch", "beats_supervised_at_4_labels_per_class")["metrics"]
    assert set(metrics) >= {"fixmatch_accuracy", "supervised_accuracy", "ceiling_accuracy", "margin"}
