"""MetNet (Sønderby et al. 2020): the ConvLSTM's equations by hand, lead-time conditioning, the axial aggregator's
receptive field, the categorical output, the generated radar (advection, mass, growth and decay), the baselines on
known shifts, the presets' parameter counts and a loss that falls."""

import math

import numpy as np
import pytest
import torch

import archzoo
from archzoo.papers.metnet import (
    AxialAggregator,
    Cells,
    ConvLSTM,
    ConvLSTMCell,
    ForecastDataset,
    MetNet,
    displacement,
    extrapolation,
    forecast_loss,
    lead_time_one_hot,
    load_radar,
    persistence,
    radar_sequences,
    render,
)
from archzoo.papers.metnet.claims import csi, tuned_csi


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# ----------------------------------------------------------------------------- ConvLSTM


def test_convlstm_cell_follows_the_equations_computed_by_hand():
    cell = ConvLSTMCell(1, 1, kernel_size=1).double()
    w = {"i": (0.5, -0.3, 0.1), "f": (0.2, 0.4, -0.2), "c": (-0.7, 0.6, 0.3), "o": (0.9, -0.1, 0.05)}  # (W_x, W_h, b)
    with torch.no_grad():
        for k, gate in enumerate("ifco"):
            cell.gates.weight[k, :, 0, 0] = torch.tensor(w[gate][:2], dtype=torch.float64)
            cell.gates.bias[k] = w[gate][2]
    x, h, c = 1.5, -0.4, 0.8
    gate = {g: w[g][0] * x + w[g][1] * h + w[g][2] for g in "ifco"}
    c_new = sigmoid(gate["f"]) * c + sigmoid(gate["i"]) * math.tanh(gate["c"])       # c_t = f o c + i o tanh(.)
    h_new = sigmoid(gate["o"]) * math.tanh(c_new)                                     # h_t = o o tanh(c_t)
    t = lambda v: torch.full((1, 1, 1, 1), v, dtype=torch.float64)                    # noqa: E731
    h_out, c_out = cell(t(x), (t(h), t(c)))
    assert h_out.item() == pytest.approx(h_new, abs=1e-12) and c_out.item() == pytest.approx(c_new, abs=1e-12)


def test_convlstm_returns_the_last_state_of_the_cell_run_from_zero():
    torch.manual_seed(0)
    lstm = ConvLSTM(2, 3).double()
    x = torch.randn(2, 4, 2, 5, 5, dtype=torch.float64)
    state = (torch.zeros(2, 3, 5, 5, dtype=torch.float64),) * 2
    for t in range(4):
        state = lstm.cell(x[:, t], state)
    torch.testing.assert_close(lstm(x), state[0])


def test_convlstm_cell_is_translation_equivariant_away_from_the_border():
    torch.manual_seed(1)
    cell = ConvLSTMCell(1, 2).double()
    x = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    x[0, 0, 3, 4] = 1.0
    zero = (torch.zeros(1, 2, 12, 12, dtype=torch.float64),) * 2
    h, _ = cell(x, zero)
    h_shifted, _ = cell(torch.roll(x, (2, 3), (2, 3)), zero)
    torch.testing.assert_close(h_shifted[..., 4:10, 5:11], torch.roll(h, (2, 3), (2, 3))[..., 4:10, 5:11])


# ----------------------------------------------------------------------------- MetNet


def tiny(**kw) -> MetNet:
    torch.manual_seed(0)
    return MetNet(**{**dict(context=3, lead_times=5, img_size=16, channels=(4, 8), hidden=8, depth=2, heads=2,
                            bins=6, bin_width=0.5), **kw})


def test_lead_time_one_hot_broadcasts_an_int_and_refuses_out_of_range_values():
    like = torch.zeros(1)
    assert lead_time_one_hot(2, 4, 3, like).tolist() == [[0, 0, 1, 0]] * 3
    assert lead_time_one_hot(torch.tensor([0, 3]), 4, 2, like).argmax(1).tolist() == [0, 3]
    with pytest.raises(ValueError, match=r"values in \[0, 4\), got \[4\]"):
        lead_time_one_hot(torch.tensor([4]), 4, 1, like)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        lead_time_one_hot(torch.tensor([1, 2, 3]), 4, 2, like)


def test_lead_time_conditioning_changes_the_output_and_is_its_only_path():
    model, x = tiny().eval(), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(model(x, 0), model(x, 4), atol=1e-4)
        first = model.downsampler.net[0]
        first.weight[:, model.in_chans:] = 0                          # cut the one-hot channels (Sec. 3.1)
        torch.testing.assert_close(model(x, 0), model(x, 4), rtol=0, atol=0)


def test_a_batch_of_lead_times_is_each_sample_at_its_own_lead_time():
    model, x = tiny().eval(), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        both = model(x, torch.tensor([1, 3]))
        torch.testing.assert_close(both[:1], model(x[:1], 1))
        torch.testing.assert_close(both[1:], model(x[1:], 3))


def test_one_axial_layer_sees_its_column_and_a_column_plus_row_pass_sees_the_whole_map():
    torch.manual_seed(2)
    x = torch.randn(1, 4, 6, 7, requires_grad=True)
    for depth, expected in ((1, "column"), (2, "all")):
        aggregator = AxialAggregator(4, depth=depth, heads=2, span=8).eval()
        (grad,) = torch.autograd.grad(aggregator(x)[0, :, 2, 3].sum(), x)
        reached = grad.abs().sum(1)[0] > 0                             # (H, W): inputs that reach output (2, 3)
        if expected == "column":
            assert reached[:, 3].all() and not reached[:, [0, 1, 2, 4, 5, 6]].any()
        else:
            assert reached.all()


def test_the_categorical_output_gives_bins_expected_rates_and_exceedance_probabilities():
    model = tiny()                                                      # 6 bins of 0.5 mm/h, the last open
    assert model.rate_to_bin(torch.tensor([0.0, 0.49, 0.5, 1.2, 2.99, 40.0])).tolist() == [0, 0, 1, 2, 5, 5]
    logits = torch.full((1, 6, 1, 2), -1e4)
    logits[0, 2, 0, 0] = logits[0, 4, 0, 1] = 0.0                       # all mass in bin 2, resp. bin 4
    torch.testing.assert_close(model.expected_rate(logits), torch.tensor([[[1.25, 2.25]]]))
    torch.testing.assert_close(model.exceedance(logits, 1.5), torch.tensor([[[0.0, 1.0]]]))
    with pytest.raises(ValueError, match="multiple of bin_width"):
        model.exceedance(logits, 1.2)


def test_input_sizes_are_checked_against_the_pooling_and_the_span():
    model = tiny()
    with pytest.raises(ValueError, match=r"multiples of 4 between 4 and 16 \(img_size\), got 14x16"):
        model(torch.rand(1, 3, 14, 16))
    with pytest.raises(ValueError, match="got 20x20"):
        model(torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match=r"expected shape \(B, C=3, H, W\)"):
        model(torch.rand(1, 4, 16, 16))


def test_preset_parameter_counts():
    with torch.device("meta"):
        paper = archzoo.create_model("metnet")
    lite = archzoo.create_model("metnet_lite")
    assert sum(p.numel() for p in paper.parameters()) == 13_375_680
    assert sum(p.numel() for p in lite.parameters()) == 68_608


def test_the_forecast_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    model = tiny()
    frames = torch.from_numpy(radar_sequences(4, frames=8, size=16, seed=3))
    lead = torch.tensor([0, 1, 2, 4])
    batch = (frames[:, :3], lead, frames[torch.arange(4), 3 + lead])              # (x, lead, frame lead + 1 ahead)
    losses = fixed_batch_losses(lambda: forecast_loss(model, batch), torch.optim.Adam(model.parameters(), 3e-3), 40)
    assert losses[-1] < 0.5 * losses[0]


# ----------------------------------------------------------------------------- the generated radar


def one_cell(sigma: float = 2.0, peak: float = 5.0, birth: float = -100.0, lifetime: float = 1000.0) -> Cells:
    return Cells(position=np.array([[10.0, 12.0]]), sigma=np.array([sigma]), peak=np.array([peak]),
                 birth=np.array([birth]), lifetime=np.array([lifetime]))


def test_a_cell_under_a_constant_wind_moves_by_the_wind_times_the_time():
    frames = render(one_cell(), wind=(1.0, -2.0), frames=6, size=24, growth=False)
    for t in range(6):
        np.testing.assert_allclose(frames[t], np.roll(frames[0], (t, -2 * t), (0, 1)), atol=1e-12)


def test_a_subpixel_wind_moves_the_centre_of_mass_on_the_torus():
    frames = render(one_cell(sigma=1.5), wind=(0.3, 0.7), frames=5, size=32, growth=False)
    angle = 2 * np.pi * np.arange(32) / 32
    for t in range(5):
        rows, cols = frames[t].sum(1), frames[t].sum(0)
        centre = [np.angle((m * np.exp(1j * angle)).sum()) * 32 / (2 * np.pi) % 32 for m in (rows, cols)]
        np.testing.assert_allclose(centre, [10 + 0.3 * t, 12 + 0.7 * t], atol=1e-6)


def test_a_cell_keeps_its_mass_without_growth_and_follows_its_life_cycle_with_it():
    sigma, peak, birth, tau = 2.0, 5.0, -1.0, 8.0
    still = render(one_cell(sigma, peak, birth, tau), (0.4, 0.9), frames=10, size=32, growth=False)
    np.testing.assert_allclose(still.sum((1, 2)), peak * 2 * np.pi * sigma ** 2, rtol=1e-9)
    living = render(one_cell(sigma, peak, birth, tau), (1.0, 2.0), frames=10, size=32, growth=True)
    t = np.arange(10)
    rate = np.where(t - birth <= tau, peak * np.sin(np.pi * np.clip((t - birth) / tau, 0, 1)), 0.0)
    np.testing.assert_allclose(living.sum((1, 2)), rate * 2 * np.pi * sigma ** 2, rtol=1e-9, atol=1e-12)
    assert living[3].max() == pytest.approx(peak, rel=1e-3)                # the peak at mid-life, t = b + tau / 2


def test_forecast_dataset_pairs_each_sequence_with_each_lead_time():
    frames = torch.arange(2 * 7 * 2 * 2, dtype=torch.float32).reshape(2, 7, 2, 2)
    ds = ForecastDataset(frames, context=3, lead_times=4)
    assert len(ds) == 8
    x, lead, y = ds[6]                                                    # sequence 1, lead time 2
    assert int(lead) == 2 and torch.equal(x, frames[1, :3]) and torch.equal(y, frames[1, 5])
    assert torch.equal(ds.targets()[1, 2], y)


def test_radar_train_and_test_sequences_differ_and_the_loader_is_registered():
    data = archzoo.data.load_dataset("radar", n_train=4, n_test=2, size=16)
    assert data.train.frames.shape == (4, 12, 16, 16) and data.test.frames.shape == (2, 12, 16, 16)
    assert not torch.equal(data.train.frames[:2], data.test.frames)
    assert torch.equal(load_radar(n_train=4, n_test=2, size=16).train.frames, data.train.frames)   # seeded


# ----------------------------------------------------------------------------- baselines


def test_phase_correlation_recovers_integer_and_subpixel_shifts():
    cells = Cells(position=np.array([[5.0, 9.0], [20.0, 25.0], [14.0, 3.0]]), sigma=np.array([1.5, 2.5, 2.0]),
                  peak=np.ones(3), birth=np.zeros(3), lifetime=np.ones(3))
    for wind in ((3.0, -5.0), (1.3, 0.6)):
        frames = render(cells, wind, frames=2, size=32, growth=False)
        np.testing.assert_allclose(displacement(frames[0], frames[1]), wind, atol=0.06)


def test_extrapolation_continues_a_pure_advection_and_persistence_repeats_the_last_frame():
    frames = torch.from_numpy(radar_sequences(3, frames=10, size=32, growth=False, seed=4))
    x, y = frames[:, :4], frames[:, 4:]
    forecast = extrapolation(x, 6)
    assert (forecast - y).abs().max() < 0.05 * y.max()
    assert torch.equal(persistence(x, 6), x[:, -1:].expand(-1, 6, -1, -1))


def test_growth_and_decay_are_what_extrapolation_cannot_predict():
    """The data leave room for the claim: extrapolation's CSI at lead time 8 is near 1 on pure advection and far
    lower with growth and decay."""
    scores = {}
    for growth in (False, True):
        frames = torch.from_numpy(radar_sequences(16, frames=12, size=32, growth=growth, seed=5))
        scores[growth] = csi(extrapolation(frames[:, :4], 8), frames[:, 4:])[-1]
    assert scores[False] > 0.9 and scores[True] < 0.5


def test_csi_counts_hits_over_hits_misses_and_false_alarms():
    y = torch.tensor([2.0, 2.0, 0.0, 0.0, 2.0]).reshape(1, 1, 1, 5)
    f = torch.tensor([2.0, 0.0, 2.0, 0.0, 2.0]).reshape(1, 1, 1, 5)       # 2 hits, 1 miss, 1 false alarm
    assert csi(f, y) == [0.5]


def test_decision_thresholds_are_chosen_on_validation_and_applied_to_test():
    y = torch.tensor([2.0, 2.0, 0.0, 0.0]).reshape(1, 1, 1, 4)
    val_score = torch.tensor([0.9, 0.6, 0.4, 0.1]).reshape(1, 1, 1, 4)      # perfect with theta in (0.4, 0.6]
    test_score = torch.tensor([0.9, 0.45, 0.4, 0.1]).reshape(1, 1, 1, 4)    # theta = 0.5 misses one of two
    test_csi, thetas = tuned_csi((val_score, y), (test_score, y), [0.3, 0.5, 0.7])
    assert thetas == [0.5] and test_csi == [0.5]


def test_the_quick_claim_reports_csi_for_metnet_and_both_baselines(quick_claim):
    metrics = quick_claim("metnet", "beats_baselines")["metrics"]
    assert len(metrics["mean_margin"]) == len(metrics["best_baseline_csi"]) == 8
    assert set(metrics["runs"][0]) == {"persistence", "extrapolation", "metnet"}
    assert set(metrics["control_no_growth"]) == {"persistence", "extrapolation"}
