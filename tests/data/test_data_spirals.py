"""The spirals of the latent ODE experiment (Neural ODEs, Sec. 5.1): points on the analytic curves, irregular
observations inside the window, the noise level, seeding."""

import numpy as np
import pytest
import torch

from archzoo.data import load_dataset, make_spirals
from archzoo.data.spirals import spiral_curves


def test_clean_trajectories_lie_on_the_two_archimedean_spirals():
    data = make_spirals(64, window=20, horizon=10, n_obs=5, grid=300, b=0.3, a=0.0)
    ts = np.linspace(0.0, 6 * np.pi, 300)
    step = ts[1] - ts[0]
    for traj, cw in zip(data.clean.double(), data.clockwise):
        center = torch.tensor([-5.0 if cw else 5.0, 0.0], dtype=torch.float64)
        r = (traj - center).norm(dim=1)                                 # (T,)
        angle = torch.atan2(traj[:, 1] - center[1], traj[:, 0] - center[0])
        if cw:                                                          # r = 50 b / z with z = t_max + 1 - t
            z = 15.0 / r
            torch.testing.assert_close(torch.diff(z), torch.full_like(z[1:], -step), rtol=0, atol=1e-4)
        else:                                                           # r = b t: the radius grows linearly
            torch.testing.assert_close(torch.diff(r), torch.full_like(r[1:], 0.3 * step), rtol=0, atol=1e-4)
        turn = torch.remainder(torch.diff(angle) + np.pi, 2 * np.pi) - np.pi
        assert (turn < 0).all() if cw else (turn > 0).all()             # the sense of rotation
    cc, cw = spiral_curves(ts, 6 * np.pi, 0.0, 0.3)
    assert cc.shape == cw.shape == (300, 2)


def test_observations_are_irregular_sorted_inside_the_window_and_noisy_at_the_given_std():
    data = make_spirals(400, window=30, horizon=20, n_obs=12, noise_std=0.3, seed=3)
    idx = data.obs_idx
    assert idx.shape == (400, 12) and int(idx.max()) < 30 and (torch.diff(idx, dim=1) > 0).all()
    assert len({tuple(row.tolist()) for row in idx}) > 300               # different times per trajectory
    noise = data.obs - data.clean.gather(1, idx[..., None].expand(-1, -1, 2))
    assert abs(float(noise.std()) - 0.3) < 0.02 and abs(float(noise.mean())) < 0.02
    torch.testing.assert_close(data.obs_t, data.t[idx])
    assert data.t[0] == 0 and len(data.t) == 50


def test_spirals_are_seeded_registered_and_check_their_sizes():
    a, b = make_spirals(8, seed=1), load_dataset("spirals", n=8, seed=1)
    assert torch.equal(a.obs, b.obs) and not torch.equal(a.obs, make_spirals(8, seed=2).obs)
    with pytest.raises(ValueError, match="n_obs must be in"):
        make_spirals(4, window=10, n_obs=11)
    with pytest.raises(ValueError, match="must not exceed the grid"):
        make_spirals(4, window=60, horizon=50, grid=100)
