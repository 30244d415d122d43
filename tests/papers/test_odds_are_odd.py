"""The Odds are Odd (Roth, Kilcher & Hofmann 2019, arXiv:1902.04818): PGD against the closed-form worst case of a
linear score, its projections and clamping; the noise-induced log-odds statistic against a hand computation in
float64; calibrated z-scores (mean 0, std 1 on the calibration data); the false-positive rate of the fitted
cut-off on held-out clean data; the corrected prediction; the preset's size; the claims' quick records."""

import pytest
import torch
from torch import nn

import archzoo
from archzoo.papers.odds_are_odd import OddsAreOdd, expected_log_odds_change, noise_statistic, pgd
from archzoo.papers.odds_are_odd.detector import correct, detection_score, fit_threshold, standardize
from archzoo.papers.odds_are_odd.log_odds import draw_noise


class BinaryLinear(nn.Module):
    """Logits (0, w.x + b): the loss of class 1 falls fastest along w, so the worst case in an eps-ball is
    x - eps sign(w) (L-inf) or x - eps w / ||w|| (L2)."""

    def __init__(self, d: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(d, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        score = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(score), score], 1)


def inputs(n=6, d=20, low=0.3, high=0.7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, d, generator=g, dtype=torch.float64), torch.ones(n, dtype=torch.long)


@pytest.mark.parametrize("rand_init", [False, True])
def test_linf_pgd_finds_the_closed_form_worst_case_of_a_linear_score(rand_init):
    model, (x, y) = BinaryLinear(20), inputs()
    x_adv = pgd(model, x, y, eps=0.1, norm="linf", generator=torch.Generator().manual_seed(0), rand_init=rand_init)
    torch.testing.assert_close(x_adv, x - 0.1 * model.w.detach().sign())


def test_l2_pgd_finds_the_closed_form_worst_case_of_a_linear_score():
    model, (x, y) = BinaryLinear(20), inputs()
    w = model.w.detach()
    x_adv = pgd(model, x, y, eps=0.5, norm="l2", rand_init=False)
    torch.testing.assert_close(x_adv, x - 0.5 * w / w.norm())
    x_rand = pgd(model, x, y, eps=0.5, norm="l2", steps=50, step_size=0.5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x_rand, x - 0.5 * w / w.norm(), atol=1e-3, rtol=0)    # from a random start, too


@pytest.mark.parametrize("norm, eps", [("linf", 0.2), ("l2", 2.0)])
def test_pgd_stays_in_the_ball_and_in_the_valid_range(norm, eps):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.rand(32, 1, 4, 4, dtype=torch.float64).round()               # pixels at 0 and 1: clamping matters
    y = torch.randint(0, 3, (32,))
    x_adv = pgd(model, x, y, eps=eps, norm=norm, steps=5, generator=torch.Generator().manual_seed(1))
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-9)).all() and size.max() > 0.5 * eps
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert ((x_adv == 0) | (x_adv == 1)).any()                              # some steps pushed past the range


def test_pgd_raises_the_loss_and_leaves_the_model_mode_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).double()
    x, y = torch.rand(32, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (32,))
    model.train()
    x_adv = pgd(model, x, y, eps=0.3, norm="linf")
    assert model.training
    model.eval()
    loss = nn.functional.cross_entropy
    assert loss(model(x_adv), y) > loss(model(x), y)


def test_pgd_rejects_bad_arguments():
    model, (x, y) = BinaryLinear(20), inputs()
    with pytest.raises(ValueError, match="norm"):
        pgd(model, x, y, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="one label per input"):
        pgd(model, x, y[:2], eps=0.1)


def tiny_model(seed=4):
    """A 4 -> 5 -> 3 tanh net whose hidden units cut through the unit cube, so that inputs from U(0, 1)^4 land in
    all three classes."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()
    with torch.no_grad():
        model[0].weight.mul_(6)
        model[0].bias.copy_(-model[0].weight.sum(1) / 2)
    return model


def test_log_odds_change_matches_a_hand_computation_in_float64():
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, generator=g, dtype=torch.float64)
    eta = 0.3 * torch.randn(2, 7, 4, generator=g, dtype=torch.float64)
    stat = expected_log_odds_change(model, x, eta)                          # (B, K, K)
    for b in range(2):
        f = model(x[b])
        for y in range(3):
            for z in range(3):
                changes = []
                for i in range(7):
                    f_noisy = model((x[b] + eta[b, i]).clamp(0, 1))
                    changes.append((f_noisy[z] - f_noisy[y]) - (f[z] - f[y]))     # g_{y,z}(x, eta_i)
                torch.testing.assert_close(stat[b, y, z], torch.stack(changes).mean())


def test_noise_statistic_draws_each_kind_of_noise_and_is_reproducible():
    model, x = tiny_model(), torch.rand(3, 4, dtype=torch.float64)
    noise = (("normal", 0.1), ("sign", 0.05))
    logits, stat = noise_statistic(model, x, noise, 5, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    for s, (kind, eps) in enumerate(noise):
        eta = draw_noise(kind, eps, (3, 5, 4), g, torch.float64)
        torch.testing.assert_close(stat[:, s], expected_log_odds_change(model, x, eta))
    torch.testing.assert_close(logits, model(x))
    assert set(draw_noise("sign", 0.05, (100,), g, torch.float64).abs().tolist()) == {0.05}


def calibrated(n=400, noise=(("uniform", 0.2),)):
    model = tiny_model()
    x = torch.rand(n, 4, dtype=torch.float64)
    y = model(x).argmax(1)                                                  # every input classified correctly
    return OddsAreOdd(model, noise, samples=8).calibrate(x, y, seed=3), x, y


def test_z_scores_of_the_calibration_data_have_mean_zero_and_std_one():
    detector, x, y = calibrated()
    pred, z = detector.z_scores(x, seed=3)                                  # the calibration's own noise draws
    assert torch.equal(pred, y)
    for c in range(3):
        others = [k for k in range(3) if k != c]
        zc = z[pred == c][:, others]
        assert len(zc) > 20
        torch.testing.assert_close(zc.mean(0), torch.zeros(2, dtype=zc.dtype), atol=1e-9, rtol=0)
        torch.testing.assert_close(zc.std(0, unbiased=False), torch.ones(2, dtype=zc.dtype))
        assert (z[pred == c][:, c] == float("-inf")).all()


def test_the_fitted_cut_off_keeps_its_false_positive_rate_on_held_out_clean_data():
    detector, _, _ = calibrated(n=300, noise=(("normal", 0.1), ("uniform", 0.2)))
    x_fit, x_held_out = torch.rand(2000, 4, dtype=torch.float64), torch.rand(2000, 4, dtype=torch.float64)
    tau = detector.fit_threshold(x_fit, fpr=0.1, seed=5)
    detected, corrected = detector(x_held_out, seed=6)
    assert tau == float(detector.tau)
    assert 0.07 <= detected.double().mean() <= 0.13                         # 0.1 +- 4.5 standard errors
    pred = detector.model(x_held_out).argmax(1)
    assert torch.equal(corrected[~detected], pred[~detected])


def test_correction_returns_the_class_the_noise_pulls_towards():
    # predicted class 2, true class 0: noise raises the log-odds of 0 against 2 far beyond their clean spread
    k = 4
    stat = torch.zeros(3, 1, k, k, dtype=torch.float64)
    stat[0, 0, 2, 0] = 5.0                                                  # gbar_{2,0}: adversarial, true class 0
    stat[1, 0, 1, 3] = 0.5                                                  # a clean input of class 1
    stat[2, 0, 3, 1] = 4.0                                                  # adversarial, true class 1
    pred = torch.tensor([2, 1, 3])
    mu, sigma = torch.zeros(1, k, k, dtype=torch.float64), torch.ones(1, k, k, dtype=torch.float64)
    z = standardize(stat, pred, mu, sigma).mean(1)
    detected = detection_score(z) > 2.0
    assert detected.tolist() == [True, False, True]
    assert correct(pred, z, detected).tolist() == [0, 1, 1]


def test_fit_threshold_flags_the_requested_fraction():
    z = torch.randn(1000, 5, dtype=torch.float64)
    tau = fit_threshold(z, 0.05)
    assert (detection_score(z) > tau).double().mean() == pytest.approx(0.05, abs=0.002)
    with pytest.raises(ValueError, match="fpr"):
        fit_threshold(z, 1.5)


def test_the_detector_must_be_calibrated_and_fitted_first():
    detector = OddsAreOdd(tiny_model(), (("normal", 0.1),), samples=2)
    with pytest.raises(RuntimeError, match="calibrate"):
        detector.z_scores(torch.rand(2, 4, dtype=torch.float64))
    detector.calibrate(torch.rand(20, 4, dtype=torch.float64), torch.zeros(20, dtype=torch.long))
    with pytest.raises(RuntimeError, match="fit_threshold"):
        detector(torch.rand(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="kind"):
        OddsAreOdd(tiny_model(), (("laplace", 0.1),))


def test_preset_has_the_authors_parameter_count():
    assert sum(p.numel() for p in archzoo.create_model("odds_cnn4").parameters()) == 66_218
    assert sum(p.numel() for p in archzoo.create_model("odds_cnn4", in_chans=1).parameters()) == 65_642


@pytest.mark.parametrize("name", ["detection", "correction"])
def test_quick_claims_report_their_numbers(quick_claim, name):
    record = quick_claim("odds_are_odd", name)
    metrics = record["metrics"]
    assert 0 <= metrics["clean_accuracy"] <= 100
    if name == "detection":
        assert 0.0 <= metrics["linf_auc"] <= 1.0 and metrics["linf_successful_attacks"] > 0
    else:
        assert metrics["linf_attacked_accuracy"] < metrics["clean_accuracy"]
