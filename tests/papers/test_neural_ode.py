"""Neural ODEs (Chen et al. 2018, arXiv:1806.07366): the ODE block against a known solution, adjoint gradients equal
backprop's, the number of function evaluations, the Table 1 parameter counts, the CNF's exact density and trace
estimator, the latent ODE's loss, and the claims' quick runs."""

import itertools

import pytest
import torch
from torch import nn

import archzoo
from archzoo.papers.neural_ode import CNF, LatentODE, ODEBlock, RNNForecaster, trace_exact, trace_hutchinson
from archzoo.papers.neural_ode.latent_ode import LatentDynamics, gaps


class Linear(nn.Module):
    """dh/dt = A h, whose solution is h(t) = exp(t A) h(0)."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t, h):
        return h @ self.a.T


def mlp_block(adjoint: bool, **kw) -> ODEBlock:
    torch.manual_seed(0)
    return ODEBlock(LatentDynamics(3, 16), adjoint=adjoint, **kw).double()


def test_ode_block_solves_a_linear_ode_exactly():
    torch.manual_seed(0)
    a = 0.5 * torch.randn(4, 4, dtype=torch.float64)
    h0 = torch.randn(5, 4, dtype=torch.float64)
    block = ODEBlock(Linear(a), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(block(h0), h0 @ torch.linalg.matrix_exp(a).T, rtol=1e-8, atol=1e-8)


# backprop through dopri5 also differentiates its step-size controller: ~1e-5 from the exact gradient even at
# rtol = atol = 1e-10 (claim adjoint_gradients measures it), so the adaptive case compares at 1e-4
@pytest.mark.parametrize("method, kw, tol", [("dopri5", dict(rtol=1e-10, atol=1e-10), 1e-4),
                                             ("rk4", dict(steps=40), 1e-6)])
def test_adjoint_gradients_equal_backprop_through_the_solver(method, kw, tol):
    h0 = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = []
    for adjoint in (False, True):
        block, x = mlp_block(adjoint, method=method, **kw), h0.clone().requires_grad_(True)
        (block(x) ** 2).sum().backward()
        grads.append([x.grad, *(p.grad for p in block.parameters())])
    for direct, adjoint in zip(*grads, strict=True):
        torch.testing.assert_close(adjoint, direct, rtol=tol, atol=tol * 1e-2)


def test_the_number_of_function_evaluations_is_recorded_forward_and_backward():
    x = torch.randn(2, 3, dtype=torch.float64)
    for adjoint, backward_nfe in ((True, 12), (False, 0)):
        block = mlp_block(adjoint, method="rk4", steps=3)
        y = block(x.requires_grad_(True))
        assert block.nfe_forward == 12                          # 3 rk4 steps, 4 evaluations each
        y.sum().backward()
        assert block.nfe_backward == backward_nfe               # the adjoint solves backwards; backprop replays
    block = mlp_block(False, rtol=1e-8, atol=1e-8)
    block(x)
    loose = mlp_block(False, rtol=1e-2, atol=1e-2)
    loose(x)
    assert block.nfe_forward > loose.nfe_forward > 0            # dopri5 takes more steps at a tighter tolerance


def test_bad_solver_settings_are_value_errors():
    f = LatentDynamics(2, 4)
    with pytest.raises(ValueError, match="method must be one of"):
        ODEBlock(f, method="euler")
    with pytest.raises(ValueError, match="rk4 takes a fixed number of steps"):
        ODEBlock(f, method="rk4")
    with pytest.raises(ValueError, match="dopri5 chooses its own steps"):
        ODEBlock(f, steps=4)


@pytest.mark.parametrize("name, count", [("odenet_mnist", 208_266), ("resnet6_mnist", 576_778)])
def test_table1_parameter_counts_are_the_authors(name, count):
    # odenet_mnist.py prints these counts; Table 1 rounds them to 0.22M and 0.60M
    with torch.device("meta"):
        model = archzoo.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count


def test_odenet_forward_records_nfe_and_its_depth_shares_one_set_of_weights():
    torch.manual_seed(0)
    net = archzoo.create_model("odenet_mnist", method="rk4", steps=2, width=8)
    x = torch.rand(2, 1, 28, 28)
    net(x).sum().backward()
    assert (net.features.nfe_forward, net.features.nfe_backward) == (8, 8)
    deeper = archzoo.create_model("odenet_mnist", method="rk4", steps=4, width=8)
    assert sum(p.numel() for p in deeper.parameters()) == sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- continuous normalizing flow


def test_cnf_density_integrates_to_one_on_a_2d_grid_and_is_not_the_base_density():
    torch.manual_seed(0)
    flow = CNF(2, width=16, hidden=16, rtol=1e-6, atol=1e-6).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(3.0)                                         # a flow far from the identity
    side = torch.linspace(-7, 7, 60, dtype=torch.float64)
    x = torch.cartesian_prod(side, side)                        # (3600, 2)
    log_p = flow.log_prob(x).detach()
    mass = float(log_p.exp().sum() * (side[1] - side[0]) ** 2)
    assert abs(mass - 1.0) < 0.01
    base = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1)
    assert float((log_p - base).abs().max()) > 0.5              # the flow moved the density


def test_hutchinson_over_every_rademacher_vector_is_the_exact_trace():
    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    dz = f(z)
    signs = list(itertools.product((-1.0, 1.0), repeat=3))     # E over all 2^3 eps: off-diagonal terms cancel
    estimates = [trace_hutchinson(dz, z, torch.tensor(s, dtype=torch.float64).expand(4, 3)) for s in signs]
    torch.testing.assert_close(torch.stack(estimates).mean(0), trace_exact(dz, z))
    jacobian = torch.autograd.functional.jacobian(lambda v: f(v).sum(0), z)          # (3, 4, 3)
    torch.testing.assert_close(trace_exact(dz, z), torch.einsum("ibi->b", jacobian))


def test_cnf_uses_the_exact_trace_in_2d_and_hutchinson_above():
    assert CNF(2).dynamics.trace == "exact" and CNF(3).dynamics.trace == "hutchinson"
    with pytest.raises(ValueError, match=r"expected points of shape \(B, 2\)"):
        CNF(2).log_prob(torch.randn(4, 3))


def test_cnf_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    flow = CNF(2, width=8, hidden=8, method="rk4", steps=4)
    x = torch.randn(64, 2) * 0.3 + torch.tensor([1.0, -1.0])
    losses = fixed_batch_losses(lambda: -flow.log_prob(x).mean(), torch.optim.Adam(flow.parameters(), 3e-2), 30)
    assert losses[-1] < losses[0] - 0.3


# ----------------------------------------------------------------------------- latent ODE


def test_gaps_are_the_times_since_the_previous_observation():
    t = torch.tensor([[0.5, 1.0, 3.0], [0.0, 2.0, 2.5]])
    assert gaps(t)[..., 0].tolist() == [[0.5, 0.5, 2.0], [0.0, 2.0, 0.5]]


def test_latent_ode_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    from archzoo.data import make_spirals

    torch.manual_seed(0)
    data = make_spirals(32, window=12, horizon=4, n_obs=8, grid=100)
    model = LatentODE(method="rk4", steps=11)
    losses = fixed_batch_losses(lambda: model.loss(data.obs, data.obs_t, data.obs_idx, data.t),
                                torch.optim.Adam(model.parameters(), 1e-2), 25)
    assert losses[-1] < 0.7 * losses[0]
    assert model(data.obs, data.obs_t, data.t).shape == (32, 16, 2)


def test_latent_ode_and_rnn_refuse_observations_of_the_wrong_shape():
    obs, t = torch.randn(4, 5, 3), torch.rand(4, 5)
    with pytest.raises(ValueError, match=r"expected observations \(B, N, 2\)"):
        LatentODE()(obs, t, torch.linspace(0, 1, 5))
    with pytest.raises(ValueError, match=r"and their times \(B, N\)"):
        RNNForecaster().loss(obs[..., :2], t[:, :3])


# ----------------------------------------------------------------------------- claims (quick runs)


def test_adjoint_gradients_quick_run_agrees_at_the_tight_tolerance(quick_claim):
    metrics = quick_claim("neural_ode", "adjoint_gradients")["metrics"]   # run once (tests/test_claims_quick.py)
    assert max(metrics["max_adjoint_vs_backprop"].values()) < 1e-2
    assert all(r["adjoint_backward"] > 0 and r["backprop_backward"] == 0 for r in metrics["nfe"])


def test_adjoint_memory_quick_run_is_flat_for_the_adjoint_and_grows_for_backprop(quick_claim):
    slopes = quick_claim("neural_ode", "adjoint_memory")["metrics"]["slopes"]
    assert abs(slopes["adjoint"]["peak_mb"]) < 0.1 < 0.5 < slopes["backprop"]["peak_mb"]
