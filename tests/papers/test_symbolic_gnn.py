"""Tests of symbolic_gnn: the simulators' physics, the graph network's symmetries and L1 term, the analysis of its
messages (linear fits, gplearn programs as sympy, the law criterion), the presets and the quick claims."""

import numpy as np
import pytest
import sympy
import torch

import archzoo
from archzoo.data import load_dataset
from archzoo.papers.symbolic_gnn import (
    GraphNetwork,
    acceleration_loss,
    accelerations,
    edge_index,
    energy,
    l1_term,
    pair_force,
    pair_potential,
    simulate_nbody,
)
from archzoo.papers.symbolic_gnn.messages import (
    DX,
    DY,
    R,
    central_law_r2,
    force_r2,
    is_affine_in_displacement,
    linear_r2,
    program_to_sympy,
)
from archzoo.papers.symbolic_gnn.simulate import LAWS, initial_states

LAW_IDS = list(LAWS)


def states(n_sims=3, n=4, dim=2, seed=0):
    return initial_states(n_sims, n, dim, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- the simulators


@pytest.mark.parametrize("law", LAW_IDS)
def test_pair_forces_are_minus_the_gradient_of_the_pair_potentials(law):
    x_i, x_j = states(5, 2, seed=1).unbind(1)
    x_i.requires_grad_(True)
    (grad,) = torch.autograd.grad(pair_potential(x_i, x_j, law).sum(), x_i)
    torch.testing.assert_close(pair_force(x_i, x_j, law), -grad[:, :2])


@pytest.mark.parametrize("law", LAW_IDS)
def test_accelerations_are_minus_the_energy_gradient_over_the_mass(law):
    x = states(3, 5).requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(x, law).sum(), x)
    torch.testing.assert_close(accelerations(x, law), -grad[..., :2] / x[..., -1:])


@pytest.mark.parametrize("law", LAW_IDS)
def test_velocity_verlet_conserves_the_energy_to_second_order_in_the_step(law):
    x0 = states(4, 4, seed=2)
    if law == "r2":
        x0[..., :2] *= 3                                   # no close encounter, which a fixed step cannot follow

    def drift(dt):                                         # the largest relative energy error over t = 1
        e = energy(simulate_nbody(x0, law, steps=round(1 / dt), dt=dt, every=round(0.1 / dt)), law)
        return ((e - e[0]).abs() / e[0].abs().clamp_min(1.0)).max()

    coarse, fine = drift(1e-3), drift(5e-4)
    assert coarse < 1e-4 and 3.5 < coarse / fine < 4.5


def test_a_spring_pair_at_rest_length_feels_no_force_and_the_third_law_holds():
    x_i = torch.tensor([0.0, 0.0, 0, 0, 0, 1], dtype=torch.float64)
    x_j = torch.tensor([0.99, 0.0, 0, 0, 0, 2], dtype=torch.float64)           # r' = 0.99 + 0.01 = 1
    torch.testing.assert_close(pair_force(x_i, x_j, "spring"), torch.zeros(2, dtype=torch.float64))
    a, b = states(1, 2, seed=3)[0]
    for law in LAWS:
        torch.testing.assert_close(pair_force(a, b, law), -pair_force(b, a, law))


def test_the_nbody_dataset_pairs_states_with_their_accelerations_from_disjoint_simulations():
    data = load_dataset("nbody", law="r2", n_train=6, n_test=2, steps=50, samples=5)
    (x, a), (x_test, _) = data.train.tensors, data.test.tensors
    assert x.shape == (30, 4, 6) and a.shape == (30, 4, 2) and x_test.shape == (10, 4, 6)
    torch.testing.assert_close(accelerations(x.double(), "r2").float(), a, rtol=1e-4, atol=1e-4)
    assert not any(torch.equal(t, u) for t in x[::5] for u in x_test[::5])
    assert (x[..., -1] > 0).all()                                              # masses exp(N(0, 1))
    with pytest.raises(ValueError, match="law must be one of"):
        load_dataset("nbody", law="gravity")


# ----------------------------------------------------------------------------- the graph network


def small_gn(**kw):
    torch.manual_seed(0)
    return GraphNetwork(2, hidden=16, **({"msg_dim": 3} | kw)).double()


def test_presets_have_the_parameter_counts_of_the_authors_models():
    # edge MLP 12-300-300-300-m, node MLP (6+m)-300-300-300-2 (the authors' models.py, hidden=300)
    counts = {name: sum(p.numel() for p in archzoo.create_model(name).parameters())
              for name in ("gn_standard", "gn_bottleneck", "gn_l1")}
    assert counts == {"gn_standard": 427_902, "gn_bottleneck": 369_004, "gn_l1": 427_902}
    assert archzoo.create_model("gn_bottleneck").msg_dim == 2 and archzoo.create_model("gn_l1").message_l1 == 1e-2


def test_the_summed_message_is_the_sum_over_senders_in_any_order():
    model, x = small_gn(), states(2, 5)
    m = model.messages(x)                                                      # (B, 20, 3), grouped by receiver
    receivers, senders = edge_index(5)
    for i in range(5):
        others = [j for j in reversed(range(5)) if j != i]                     # another order of the senders
        direct = sum(model.edge_model(torch.cat([x[:, i], x[:, j]], -1)) for j in others)
        torch.testing.assert_close(m[:, receivers == i].sum(1), direct)
    assert set(zip(receivers.tolist(), senders.tolist())) == {(i, j) for i in range(5) for j in range(5) if i != j}


def test_the_network_is_equivariant_to_relabelling_the_particles():
    model, x = small_gn(), states(3, 6)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(model(x[:, perm]), model(x)[:, perm])


def test_the_l1_penalty_is_its_weight_times_the_mean_message_l1_norm_in_training_only():
    model, x = small_gn(message_l1=0.3), states(2, 4)
    model.train()(x)
    expected = 0.3 * model.messages(x).abs().sum(-1).mean()
    torch.testing.assert_close(model.aux_loss, expected)
    torch.testing.assert_close(l1_term(torch.tensor([[1.0, -2.0], [0.0, 3.0]])), torch.tensor(3.0))
    model.aux_loss = None
    model.eval()(x)
    assert model.aux_loss is None
    unpenalised = small_gn().train()
    unpenalised(x)
    assert unpenalised.aux_loss is None


def test_translation_augmentation_moves_positions_only(monkeypatch):
    model, x = small_gn(), states(2, 4)
    seen = []
    monkeypatch.setattr(model, "forward", lambda inp: seen.append(inp) or inp[..., :2])
    acceleration_loss(model, (x, x[..., :2]), augment=3.0)
    shift = seen[0] - x
    assert torch.equal(shift[..., 2:], torch.zeros_like(shift[..., 2:]))
    torch.testing.assert_close(shift[..., :2], shift[:, :1, :2].expand(-1, 4, -1))     # one shift per graph
    assert shift[..., :2].abs().min() > 0


def test_bad_states_are_value_errors_naming_the_expected_shape():
    model = small_gn()
    with pytest.raises(ValueError, match="expected shape"):
        model(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="expected shape"):
        model(torch.zeros(4, 6))
    with pytest.raises(ValueError, match=r"\(\.\.\., n, 2D \+ 2\)"):
        accelerations(torch.zeros(4, 5), "spring")


def test_the_acceleration_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = GraphNetwork(2, msg_dim=2, hidden=32)
    x = states(8, 4).float()
    a = accelerations(x.double(), "spring").float()
    losses = fixed_batch_losses(lambda: acceleration_loss(model, (x, a)), torch.optim.Adam(model.parameters(), 3e-3),
                                150)
    assert losses[-1] < 0.3 * losses[0]


# ----------------------------------------------------------------------------- the analysis of the messages


def test_r2_is_one_for_messages_linear_in_the_force_and_near_zero_for_unrelated_ones():
    rng = np.random.default_rng(0)
    force = rng.normal(size=(500, 2))
    messages = np.column_stack([force @ [0.6, -1.4] + 0.3, rng.normal(size=500) * 0.01])
    records = {"force": force, "messages": messages}
    assert force_r2(records, 1)[0] == pytest.approx(1.0)                       # the most variant component first
    assert abs(linear_r2(rng.normal(size=500), force)) < 0.02


def test_a_gplearn_program_becomes_the_sympy_expression_it_computes():
    from gplearn.genetic import SymbolicRegressor

    rng = np.random.default_rng(1)
    inputs = np.column_stack([rng.normal(size=200), rng.normal(size=200), rng.uniform(0.5, 3, size=200)])
    regressor = SymbolicRegressor(population_size=200, generations=3, function_set=("add", "sub", "mul", "div", "inv"),
                                  random_state=0, n_jobs=1).fit(inputs, inputs[:, 0] * (1 - 1 / inputs[:, 2]))
    expr = program_to_sympy(regressor._program.program)
    values = sympy.lambdify((DX, DY, R), expr, "numpy")(*inputs.T)
    np.testing.assert_allclose(np.broadcast_to(values, (200,)), regressor.predict(inputs), rtol=1e-9, atol=1e-9)


def test_the_law_criterion_reads_the_radial_factor_of_each_direction():
    r = np.random.default_rng(2).uniform(0.3, 4, size=400)
    spring = 0.6 * DX * (1 - 1 / R) - 1.3 * DY * (1 - 1 / R) + 0.1 / R      # an offset g_0(r) carries no direction
    fits = central_law_r2(spring, r)
    assert fits["spring (1 - 1/r)"] == pytest.approx(1.0) and max(fits.values()) == fits["spring (1 - 1/r)"]
    assert central_law_r2(DX * (1 - 1 / R) - 0.5 * DY * R, r)["spring (1 - 1/r)"] < 0.95    # dy's factor is wrong
    assert central_law_r2(DX - DY, r)["Hooke, no rest length (1)"] == pytest.approx(1.0)
    assert central_law_r2(DX / R ** 3, r)["1/r^2 force (1/r^3)"] == pytest.approx(1.0)
    assert set(central_law_r2(0.3 * R, r).values()) == {0.0}                                # no direction at all
    assert is_affine_in_displacement(sympy.expand(spring)) and not is_affine_in_displacement(DX * DY)


# ----------------------------------------------------------------------------- the quick claims


@pytest.mark.parametrize("name", ["bottleneck_messages_are_forces", "l1_messages_are_forces"])
def test_quick_linearity_claims_report_r2_per_law_and_model(quick_claim, name):
    record = quick_claim("symbolic_gnn", name)
    r2 = record["metrics"]["r2"]
    assert set(r2) == {"spring", "r2"}
    assert all(len(comps) == 2 and all(-1 <= v <= 1 for v in comps) for runs in r2["spring"].values()
               for comps in (runs if isinstance(runs[0], list) else [runs]))


def test_quick_symbolic_regression_claim_reports_each_run_and_its_law_fits(quick_claim):
    metrics = quick_claim("symbolic_gnn", "symbolic_regression_recovers_spring_law")["metrics"]
    assert metrics["of"] == len(metrics["runs"]) == 1
    assert set(metrics["runs"][0]["law_r2"]) >= {"spring (1 - 1/r)", "Hooke, no rest length (1)"}
