"""The PDE generators against known solutions: Burgers against Cole-Hopf, Darcy against a manufactured solution."""

import numpy as np
import pytest
import torch

from archzoo.data import load_dataset
from archzoo.data.pdes import burgers_initial, darcy_coefficient, solve_burgers, solve_darcy


def cole_hopf(x: np.ndarray, t: float, nu: float) -> np.ndarray:
    """u = -2 nu phi_x / phi with phi = 2 + exp(-4 pi^2 nu t) cos(2 pi x), a solution of the heat equation."""
    decay = np.exp(-4 * np.pi ** 2 * nu * t)
    return 4 * np.pi * nu * decay * np.sin(2 * np.pi * x) / (2 + decay * np.cos(2 * np.pi * x))


@pytest.mark.parametrize("t", [0.05, 0.25, 1.0])
def test_burgers_solver_matches_the_cole_hopf_solution(t):
    x = np.arange(256) / 256
    u = solve_burgers(cole_hopf(x, 0.0, 0.1)[None], t=t, nu=0.1)[0]
    assert np.abs(u - cole_hopf(x, t, 0.1)).max() <= 1e-6 * np.abs(cole_hopf(x, t, 0.1)).max()


def test_burgers_solver_is_nonlinear_where_cole_hopf_differs_from_the_heat_equation():
    x, nu, t = np.arange(128) / 128, 0.1, 0.25
    u0 = cole_hopf(x, 0.0, nu)
    heat = np.fft.irfft(np.fft.rfft(u0) * np.exp(-nu * (2 * np.pi * np.arange(65)) ** 2 * t), n=128)
    assert np.abs(solve_burgers(u0[None], t=t, nu=nu)[0] - heat).max() > 1e-3       # the u u_x term matters


def test_burgers_initial_conditions_have_the_covariance_of_the_paper():
    u0 = burgers_initial(4000, grid=256, seed=1)
    coef = np.fft.rfft(u0, axis=-1)[:, 1:4] * 2 / 256                     # a_k - i b_k
    expected = np.sqrt(2) * 25 / ((2 * np.pi * np.arange(1, 4)) ** 2 + 25)   # std of the cos and sin amplitudes
    np.testing.assert_allclose(coef.real.std(0), expected, rtol=0.05)
    np.testing.assert_allclose(u0.mean(-1), 0, atol=1e-12)


def test_burgers_dataset_is_seeded_and_the_same_functions_at_every_resolution():
    low, high = (load_dataset("burgers", n_train=4, n_test=2, resolution=r, seed=3) for r in (64, 256))
    a_low, u_low = low.test.tensors
    a_high, u_high = high.test.tensors
    assert a_low.shape == (2, 1, 64) and u_high.shape == (2, 1, 256)
    assert (a_high[..., ::4] == a_low).all() and (u_high[..., ::4] == u_low).all()
    again = load_dataset("burgers", n_train=8, n_test=2, resolution=64, seed=3)
    assert (again.test.tensors[0] == a_low).all()                          # the test set does not depend on n_train
    assert (again.train.tensors[0][:4] == low.train.tensors[0]).all()
    other = load_dataset("burgers", n_train=4, n_test=2, resolution=64, seed=4)
    assert not torch.equal(other.test.tensors[0], a_low)


def test_a_resolution_that_does_not_divide_the_solver_grid_is_a_value_error():
    with pytest.raises(ValueError, match="resolution must divide"):
        load_dataset("burgers", n_train=2, n_test=1, resolution=100)


def manufactured(s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a = 1 + x + y^2, u = sin(pi x) sin(pi y), f = -div(a grad u) computed by hand."""
    x, y = np.meshgrid(np.linspace(0, 1, s), np.linspace(0, 1, s), indexing="ij")
    a = 1 + x + y ** 2
    u = np.sin(np.pi * x) * np.sin(np.pi * y)
    u_x = np.pi * np.cos(np.pi * x) * np.sin(np.pi * y)
    u_y = np.pi * np.sin(np.pi * x) * np.cos(np.pi * y)
    f = -(1 * u_x + 2 * y * u_y + a * (-2 * np.pi ** 2 * u))             # -(a_x u_x + a_y u_y + a Laplace(u))
    return a, f, u


def test_darcy_solver_converges_at_second_order_to_a_manufactured_solution():
    errors = []
    for s in (17, 33, 65):
        a, f, u = manufactured(s)
        errors.append(np.abs(solve_darcy(a, f) - u).max())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] < 1e-3 and (orders > 1.8).all(), (errors, orders)


def test_darcy_coefficient_is_twelve_or_three_in_about_equal_parts_and_the_solution_is_positive():
    a = darcy_coefficient(50, 32, seed=0)
    assert set(np.unique(a)) == {3.0, 12.0} and 0.35 < (a == 12).mean() < 0.65
    data = load_dataset("darcy", n_train=3, n_test=1, resolution=16)
    coef, u = data.train.tensors
    assert coef.shape == u.shape == (3, 1, 16, 16)
    assert (u[..., 1:-1, 1:-1] > 0).all() and (u[..., 0, :] == 0).all()    # f = 1 > 0: maximum principle


def test_darcy_solver_refuses_a_non_square_grid():
    with pytest.raises(ValueError, match="square grid"):
        solve_darcy(np.ones((4, 5)))
