"""The sampling protocol: draw_samples is seeded, runs in eval mode without gradients, and restores the modes."""

import pytest
import torch
from torch import nn

from archzoo.engine.sampling import GenerativeModel, draw_samples


class ToyGenerator(nn.Module):
    """z ~ N(0, I) through a linear map with dropout: samples differ between train and eval mode."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
        self.seen = []                                             # (training, grad enabled) at each call

    def sample(self, n, generator=None, scale=1.0):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return scale * self.net(torch.randn(n, 4, generator=generator))


def test_the_same_seed_gives_the_same_samples_and_another_seed_others():
    torch.manual_seed(0)
    model = ToyGenerator()
    assert isinstance(model, GenerativeModel) and not isinstance(nn.Linear(2, 2), GenerativeModel)
    a, b, c = draw_samples(model, 5, seed=1), draw_samples(model, 5, seed=1), draw_samples(model, 5, seed=2)
    assert a.shape == (5, 3) and torch.equal(a, b) and not torch.allclose(a, c)
    torch.testing.assert_close(draw_samples(model, 5, seed=1, scale=2.0), 2 * a)     # options reach sample()
    assert model.seen[0] == (False, False)                                          # eval mode, no grad


def test_draw_samples_restores_every_submodule_mode_even_when_sampling_fails():
    model = ToyGenerator().train()
    model.net[1].eval()                                                             # a mixed-mode model
    draw_samples(model, 2, seed=0)
    assert model.training and model.net[0].training and not model.net[1].training

    def broken(n, generator=None):
        raise RuntimeError("boom")

    model.sample = broken
    with pytest.raises(RuntimeError, match="boom"):
        draw_samples(model, 2, seed=0)
    assert model.training and not model.net[1].training


def test_draw_samples_rejects_models_without_sample_and_wrong_sample_counts():
    with pytest.raises(TypeError, match="Linear has no sample"):
        draw_samples(nn.Linear(2, 2), 4, seed=0)
    model = ToyGenerator()
    model.sample = lambda n, generator=None: torch.zeros(n + 1, 3)
    with pytest.raises(ValueError, match=r"shape \(4, ...\), got \(5, 3\)"):
        draw_samples(model, 4, seed=0)
