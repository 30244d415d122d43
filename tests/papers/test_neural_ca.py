"""Growing Neural Cellular Automata (Mordvintsev et al., Distill 2020): Sobel perception, the zero-initialised update,
living cell masking, stochastic updates, rotation equivariance, the parameter count, the pool and damage, gradient
normalisation, a loss that falls, the pool across checkpoint/resume and the claims' quick runs."""

import math

import pytest
import torch

import archzoo
from archzoo.engine.hooks import Every
from archzoo.engine.schedules import step_decay
from archzoo.engine.trainer import Trainer
from archzoo.papers.neural_ca import (
    GrowthStep,
    NeuralCA,
    NormalizeGradients,
    alive_mask,
    circle_masks,
    draw_target,
    pad_target,
    perceive,
    rgba_loss,
    seed_state,
    train_ca,
)

D64 = torch.float64


def trained_like(ca: NeuralCA, seed: int = 0, std: float = 0.1) -> NeuralCA:
    """`ca` with a random last layer (the zero-initialised one would make every update vanish)."""
    torch.manual_seed(seed)
    torch.nn.init.normal_(ca.update_rule[-1].weight, std=std)
    torch.nn.init.normal_(ca.update_rule[-1].bias, std=std)
    return ca


def random_state(batch=2, channels=16, side=9, seed=0) -> torch.Tensor:
    return torch.rand(batch, channels, side, side, generator=torch.Generator().manual_seed(seed), dtype=D64)


# ----------------------------------------------------------------------------- perception


def test_perception_is_identity_and_the_sobel_filters_by_hand():
    x = random_state(batch=1, channels=2, side=5)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))[0]                  # zero padding ('SAME' in the article)
    sobel_x = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]                        # d/dx: along the width, / 8
    expected = torch.zeros(1, 6, 5, 5, dtype=D64)
    for c in range(2):
        for i in range(5):
            for j in range(5):
                window = padded[c, i:i + 3, j:j + 3]
                expected[0, 3 * c, i, j] = x[0, c, i, j]
                expected[0, 3 * c + 1, i, j] = sum(sobel_x[a][b] * window[a, b] for a in range(3) for b in range(3)) / 8
                expected[0, 3 * c + 2, i, j] = sum(sobel_x[b][a] * window[a, b] for a in range(3) for b in range(3)) / 8
    torch.testing.assert_close(perceive(x), expected, rtol=1e-12, atol=1e-12)


def test_the_sobel_filters_measure_the_slope_of_a_linear_ramp():
    i, j = torch.meshgrid(torch.arange(7, dtype=D64), torch.arange(7, dtype=D64), indexing="ij")
    p = perceive((2 * j + 3 * i)[None, None])[0, :, 1:-1, 1:-1]           # inside: no padding effect
    torch.testing.assert_close(p[1], torch.full_like(p[1], 2.0))          # d/dx = 2 (the sum of |S_x| is 8)
    torch.testing.assert_close(p[2], torch.full_like(p[2], 3.0))          # d/dy = 3


# ----------------------------------------------------------------------------- the update and the masks


def test_the_article_count_is_8336_parameters_and_the_last_layer_starts_at_zero():
    ca = archzoo.create_model("neural_ca_growing")
    assert sum(p.numel() for p in ca.parameters()) == 48 * 128 + 128 + 128 * 16 + 16 == 8_336
    assert not ca.update_rule[-1].weight.any() and not ca.update_rule[-1].bias.any()


def test_the_zero_initialised_update_leaves_the_seed_unchanged():
    ca, seed = NeuralCA(), seed_state(12, 12, batch=2)
    torch.testing.assert_close(ca.grow(seed, 20), seed, rtol=0, atol=0)


def test_living_cell_masking_zeros_every_cell_with_no_live_neighbour():
    x = random_state(side=9).float() * 0.09 + 0.01                         # alpha everywhere <= 0.1: all dead ...
    x[0, 3, 2, 6] = 0.5                                                    # ... but one live cell in sample 0
    alive = alive_mask(x)
    expected = torch.zeros(2, 1, 9, 9, dtype=torch.bool)
    expected[0, 0, 1:4, 5:8] = True                                        # its 3x3 neighbourhood
    assert torch.equal(alive, expected)
    y = NeuralCA()(x)                                                      # the zero update: only the mask acts
    torch.testing.assert_close(y, x * expected, rtol=0, atol=0)


def test_a_cell_that_dies_in_the_update_is_masked_after_it():
    ca = NeuralCA()
    ca.update_rule[-1].bias.data[3] = -1.0                                 # every update lowers alpha by 1
    x = seed_state(7, 7)
    assert not ca(x, fire_rate=1.0).any()                                  # alive before, dead after: zeroed


def test_fire_rate_one_is_the_deterministic_update():
    ca = trained_like(NeuralCA().double())
    x = random_state()
    ds = ca.update_rule(perceive(x))                                       # every cell updates
    expected = (x + ds) * (alive_mask(x) & alive_mask(x + ds))
    torch.testing.assert_close(ca(x, fire_rate=1.0), expected, rtol=0, atol=0)


def test_at_fire_rate_one_half_about_half_of_the_cells_update():
    ca = trained_like(NeuralCA())
    x = torch.ones(4, 16, 32, 32)                                          # every cell alive, every update nonzero
    torch.manual_seed(3)
    changed = (ca(x, fire_rate=0.5) != x).any(1).float().mean()
    assert 0.46 < changed < 0.54                                           # 4,096 cells: std 0.008


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_ca_is_equivariant_to_quarter_turns_when_its_sobel_filters_turn_with_it(k):
    """On a square grid with zero padding a quarter turn maps the grid to itself; the identity filter and the
    per-cell update are invariant, and the Sobel pair of the angle k pi / 2 perceives the turned gradient."""
    ca = trained_like(NeuralCA().double())
    x = random_state(side=10)
    x[:, 3] = (x[:, 3] - 0.6).clamp_min(0)                                 # some cells dead, so the masks matter
    turned = torch.rot90(x, k, dims=(2, 3))
    expected = torch.rot90(ca(x, fire_rate=1.0), k, dims=(2, 3))
    torch.testing.assert_close(ca(turned, fire_rate=1.0, angle=k * math.pi / 2), expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(ca(turned, fire_rate=1.0), expected)         # with unturned filters it is not


def test_a_wrong_state_is_a_value_error_naming_the_shape():
    with pytest.raises(ValueError, match=r"expected shape \(B, C=16, H, W\), got \(2, 3, 8, 8\)"):
        NeuralCA()(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="fire_rate"):
        NeuralCA(fire_rate=0.0)


# ----------------------------------------------------------------------------- target, pool, damage, training


def test_the_target_is_rgba_premultiplied_by_alpha_and_the_seed_is_one_cell():
    target = draw_target(16)
    assert target.shape == (4, 16, 16) and target.min() >= 0 and target[3].max() == 1.0
    assert (target[:3] <= target[3:] + 1e-6).all()                         # premultiplied: rgb <= alpha
    seed = seed_state(9, 9, batch=1)
    assert seed[0, 3:, 4, 4].eq(1).all() and seed.sum() == 13              # alpha + 12 hidden channels, RGB 0


def test_damage_erases_discs_of_the_articles_sizes():
    masks = circle_masks(200, 64, 64, generator=torch.Generator().manual_seed(0))
    area = masks.float().mean((1, 2, 3)) * 4                               # in units of the [-1, 1]^2 square
    radius = (area / math.pi).sqrt()
    assert 0.09 < radius.min() and radius.max() < 0.41                     # radius in [0.1, 0.4] (some cut)


def test_the_pool_batch_seeds_its_worst_sample_and_damages_its_best_ones():
    target = pad_target(draw_target(16), 4)                                # (4, 24, 24)
    step = GrowthStep(target, regime="regenerating", batch_size=4, pool_size=4, damage=2, min_steps=1, max_steps=1)
    scale = torch.tensor([0.0, 3.0, 1.0, 2.0])                            # pool sample i: target * (1 - scale)
    grown = torch.cat([target, torch.ones(12, 24, 24)])[None]
    step.pool = grown * (1 - scale[:, None, None, None])
    step.pool[:, 3] = target[3]                                            # all fully alive, so damage shows
    torch.manual_seed(0)
    idx, x0 = step.batch()
    assert idx.tolist() == [1, 3, 2, 0]                                    # sorted, worst (largest loss) first
    torch.testing.assert_close(x0[:1], step.seed)
    assert torch.equal(x0[1], step.pool[3])                                # the middle ones untouched
    for i in (2, 3):                                                       # the best ones lost a disc of cells
        erased = (x0[i] == 0).all(0) & (step.pool[idx[i]] != 0).any(0)
        assert erased.sum() > 0


def test_the_persistent_pool_seeds_its_worst_sample_and_damages_none_and_growing_uses_seeds_only():
    target = pad_target(draw_target(8), 2)
    persistent = GrowthStep(target, regime="persistent", batch_size=4, pool_size=16)
    persistent.pool = torch.rand(16, 16, 12, 12)
    idx, x0 = persistent.batch()
    torch.testing.assert_close(x0[:1], persistent.seed)
    assert torch.equal(x0[1:], persistent.pool[idx[1:]])
    growing = GrowthStep(target, regime="growing", batch_size=3)
    idx, x0 = growing.batch()
    assert idx is None and growing.pool is None and torch.equal(x0, seed_state(12, 12, batch=3))


def test_normalized_gradients_have_unit_norm_per_parameter():
    ca = trained_like(NeuralCA())
    ca.grow(torch.rand(2, 16, 8, 8), 3)[:, :4].square().mean().backward()
    opt = torch.optim.Adam(ca.parameters())
    NormalizeGradients().after_backward(type("T", (), {"optimizers": {"o": opt}})(), "o")
    for p in ca.parameters():
        assert abs(float(p.grad.norm()) - 1.0) < 1e-5


def test_growth_training_lowers_the_loss():
    torch.manual_seed(0)
    target = pad_target(draw_target(8), 2)
    ca = NeuralCA()
    result = train_ca(ca, target, steps=30, regime="growing", batch_size=2, min_steps=8, max_steps=10)
    do_nothing = float(rgba_loss(seed_state(12, 12), target))                # the zero-initialised CA keeps the seed
    assert result.losses[0] == pytest.approx(do_nothing, rel=1e-6)
    assert sum(result.losses[-5:]) / 5 < 0.5 * result.losses[0]


class Interrupt(Exception):
    pass


def pool_trainer(checkpoint_dir, hooks=()) -> Trainer:
    torch.manual_seed(0)
    ca = NeuralCA()
    opt = torch.optim.Adam(ca.parameters(), lr=2e-3)
    step = GrowthStep(pad_target(draw_target(8), 2), regime="regenerating", batch_size=4, pool_size=8, damage=1,
                      min_steps=3, max_steps=5)
    return Trainer(ca, opt, step_decay(opt, steps=6, at=(0.5,)), steps=6, step=step,
                   hooks=[NormalizeGradients(), *hooks], checkpoint_dir=checkpoint_dir, checkpoint_every=3,
                   progress=False)


def test_the_pool_and_the_weights_resume_bit_for_bit(tmp_path):
    whole = pool_trainer(tmp_path / "whole")
    whole.fit()

    def stop(trainer):
        raise Interrupt                                                    # after the checkpoint of step 3

    with pytest.raises(Interrupt):
        pool_trainer(tmp_path / "half", hooks=[Every(4, stop)]).fit()
    resumed = pool_trainer(tmp_path / "half")
    assert not torch.equal(resumed.step_fn.pool, whole.step_fn.pool)
    resumed.fit(resume=True)
    assert torch.equal(resumed.step_fn.pool, whole.step_fn.pool) and whole.step_fn.pool[:, 3].sum() > 0
    for a, b in zip(whole.models["model"].state_dict().values(), resumed.models["model"].state_dict().values()):
        assert torch.equal(a, b)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]


def test_quick_claims_run(quick_claim):
    growth = quick_claim("neural_ca", "grows_target")["metrics"]
    target = pad_target(draw_target(8), 2)
    seed_loss = float(rgba_loss(seed_state(12, 12), target))
    assert growth["untrained_loss"] == pytest.approx(seed_loss, rel=1e-6)       # the untrained CA keeps the seed
    assert len(growth["loss"]) == len(growth["psnr"]) == 1
    regeneration = quick_claim("neural_ca", "regenerates_after_damage")["metrics"]
    assert set(regeneration["mean"]) == {"growing", "regenerating"}
    assert all(len(runs) == 1 for runs in regeneration["per_seed"].values())

