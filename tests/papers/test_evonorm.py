"""EvoNorm (Liu et al. 2020, arXiv:2004.02967): the layers against their formulas, batch (in)dependence, the search
space, the rejections, the evolution loop, the presets and the claims."""

import random

import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.papers.evonorm import (
    EVONORM_B0,
    EVONORM_S0,
    PRIMITIVES,
    EvoNormB0,
    EvoNormS0,
    GraphLayer,
    evolution,
    graph,
    lightweight_rejection,
    mutate,
    norm_act_resnet,
    random_graph,
    random_search,
    regularized_evolution,
    worst_case_grad_norm,
)
from archzoo.papers.evonorm.claims import PerWorker
from archzoo.papers.evonorm.search_space import INITIAL_NODES

EPS = 1e-5


def randomize(layer: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial parameters (v_1, gamma, beta away from their 1, 1, 0 initialisation), float64."""
    g = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(0.5 + torch.rand(p.shape, generator=g, dtype=torch.float64))
    return layer


def b0_formula(x, v1, gamma, beta, batch_var):
    """EvoNorm-B0 transcribed: x / max(sqrt(s^2_bwh + eps), v1 x + sqrt(s^2_wh + eps)) * gamma + beta."""
    c = lambda p: p.view(1, -1, 1, 1)  # noqa: E731
    inst_var = ((x - x.mean((2, 3), keepdim=True)) ** 2).mean((2, 3), keepdim=True)     # biased, per (b, c)
    den = torch.maximum(torch.sqrt(c(batch_var) + EPS), c(v1) * x + torch.sqrt(inst_var + EPS))
    return x / den * c(gamma) + c(beta)


def s0_formula(x, v1, gamma, beta, groups):
    """EvoNorm-S0 transcribed group by group: x sigmoid(v1 x) / sqrt(s^2_{w,h,c/g} + eps) * gamma + beta."""
    c = lambda p: p.view(1, -1, 1, 1)  # noqa: E731
    n = x.shape[1] // groups
    std = torch.cat([torch.sqrt(x[:, k * n:(k + 1) * n].var(dim=(1, 2, 3), unbiased=False) + EPS)
                     .view(-1, 1, 1, 1).expand(-1, n, *x.shape[2:]) for k in range(groups)], dim=1)
    return x * torch.sigmoid(c(v1) * x) / std * c(gamma) + c(beta)


# ----------------------------------------------------------------------------- the layers against their formulas


def test_b0_in_training_is_its_formula_with_the_biased_batch_variance():
    x = torch.randn(5, 6, 4, 3, dtype=torch.float64)
    layer = randomize(EvoNormB0(6)).train()
    batch_var = ((x - x.mean((0, 2, 3), keepdim=True)) ** 2).mean((0, 2, 3))
    torch.testing.assert_close(layer(x), b0_formula(x, layer.v1, layer.weight, layer.bias, batch_var))


def test_b0_keeps_a_moving_average_of_the_batch_variance_and_uses_it_in_eval():
    x = torch.randn(5, 6, 4, 3, dtype=torch.float64)
    layer = randomize(EvoNormB0(6))
    layer.running_var.fill_(1.0)
    layer.train()(x)
    batch_var = x.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(layer.running_var, 0.9 * 1.0 + 0.1 * batch_var)          # decay 0.9, biased
    y = torch.randn(3, 6, 4, 3, dtype=torch.float64)
    expected = b0_formula(y, layer.v1, layer.weight, layer.bias, layer.running_var)
    before = layer.running_var.clone()
    torch.testing.assert_close(layer.eval()(y), expected)
    torch.testing.assert_close(layer.running_var, before)                               # eval does not update it


def test_s0_is_its_formula_in_training_and_in_eval():
    x = torch.randn(3, 8, 5, 4, dtype=torch.float64)
    layer = randomize(EvoNormS0(8, groups=4))
    expected = s0_formula(x, layer.v1, layer.weight, layer.bias, groups=4)
    torch.testing.assert_close(layer.train()(x), expected)
    torch.testing.assert_close(layer.eval()(x), expected)


def test_layers_start_from_the_papers_initialisation():
    for layer in (EvoNormB0(4), EvoNormS0(4, groups=2)):
        assert torch.equal(layer.v1, torch.ones(4)) and torch.equal(layer.weight, torch.ones(4))
        assert torch.equal(layer.bias, torch.zeros(4))
    assert torch.equal(EvoNormB0(4).running_var, torch.ones(4))


def test_b0_depends_on_the_batch_in_training_but_not_in_eval():
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64)
    other = x.clone()
    other[1:] = 3 * torch.randn(3, 6, 5, 5, dtype=torch.float64)                        # sample 0 kept
    layer = randomize(EvoNormB0(6))
    assert not torch.allclose(layer.train()(x)[0], layer(other)[0])                     # batch variance moved
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(other)[0])
    torch.testing.assert_close(layer(x)[:1], layer(x[:1]))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_s0_output_of_a_sample_never_depends_on_the_others(mode):
    x = torch.randn(4, 8, 5, 5, dtype=torch.float64)
    layer = randomize(EvoNormS0(8, groups=4)).train(mode == "train")
    alone = torch.cat([layer(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(layer(x), alone)


def test_s0_gradients_are_exact():
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    layer = randomize(EvoNormS0(4, groups=2))
    assert torch.autograd.gradcheck(lambda x, v1, g, b: s0_like(layer, x, v1, g, b),
                                    (x, layer.v1.detach().clone().requires_grad_(),
                                     layer.weight.detach().clone().requires_grad_(),
                                     layer.bias.detach().clone().requires_grad_()))


def s0_like(layer, x, v1, gamma, beta):
    """The layer's forward with its parameters swapped for the given tensors (so gradcheck also checks them)."""
    return torch.func.functional_call(layer, {"v1": v1, "weight": gamma, "bias": beta}, (x,))


def test_b0_gradients_are_exact_in_training():
    x = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    layer = randomize(EvoNormB0(4)).train()
    assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_second_derivatives_are_exact(mode):
    # the fast path's backward is hand-written; with create_graph=True it differentiates the written-out formula
    x = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    for layer in (randomize(EvoNormB0(4)), randomize(EvoNormS0(4, groups=2))):
        layer.train(mode == "train")
        assert torch.autograd.gradgradcheck(layer, (x,))


def test_bad_input_and_bad_groups_raise_value_errors():
    with pytest.raises(ValueError, match="C=6"):
        EvoNormB0(6)(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="C=8"):
        EvoNormS0(8, groups=4)(torch.randn(2, 8, 4))
    with pytest.raises(ValueError, match="divide"):
        EvoNormS0(12, groups=5)
    with pytest.raises(ValueError, match="expected shape"):
        archzoo.create_model("resnet20_evonorm_s0")(torch.randn(2, 1, 32, 32))


# ----------------------------------------------------------------------------- the search space


def test_the_primitives_are_table_1():
    elementwise = {"add": 2, "mul": 2, "div": 2, "max": 2, "neg": 1, "sigmoid": 1, "tanh": 1, "exp": 1, "log": 1,
                   "abs": 1, "square": 1, "sqrt": 1}
    aggregates = {f"{stat}_{axes}": 1 for stat in ("mean", "std") for axes in ("bwh", "wh", "whcg")}
    assert {name: p.arity for name, p in PRIMITIVES.items()} == elementwise | aggregates
    assert INITIAL_NODES == ("x", "0", "v0", "v1")
    x = torch.tensor([-4.0, -0.25, 0.25, 9.0])
    torch.testing.assert_close(PRIMITIVES["log"].fn(x), torch.sign(x) * torch.log(x.abs()))  # sign(x) ln|x|
    torch.testing.assert_close(PRIMITIVES["sqrt"].fn(x), torch.tensor([-2.0, -0.5, 0.5, 3.0]))  # sign(x) sqrt|x|


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_evonorm_b0_and_s0_are_points_of_the_search_space(mode):
    x = torch.randn(4, 8, 5, 5, dtype=torch.float64)
    for layer_graph, layer in ((EVONORM_B0, randomize(EvoNormB0(8))), (EVONORM_S0, randomize(EvoNormS0(8, 4)))):
        as_graph = GraphLayer(layer_graph, 8, groups=4).double()
        as_graph.load_state_dict({"v1": layer.v1, "weight": layer.weight, "bias": layer.bias,
                                  "v0": torch.zeros(8, dtype=torch.float64),
                                  **({"running_4": layer.running_var} if layer_graph is EVONORM_B0 else {})})
        if mode == "eval":                                                 # gather running statistics first
            layer.train()(x), as_graph.train()(x)
        torch.testing.assert_close(as_graph.train(mode == "train")(x), layer.train(mode == "train")(x))
    assert EVONORM_B0.batch_dependent() and not EVONORM_S0.batch_dependent()
    assert str(EVONORM_B0) == "x / max(s_bwh(x), (v1 * x) + s_wh(x))"


def test_mutation_changes_one_node_and_keeps_a_valid_graph():
    rng = random.Random(0)
    for _ in range(200):
        parent = random_graph(rng, 6)
        child = mutate(parent, rng)                                        # LayerGraph validates its edges
        assert len(child.nodes) == len(parent.nodes)
        assert sum(a != b for a, b in zip(parent.nodes, child.nodes)) <= 1


def test_lightweight_rejection_catches_degenerate_layers_and_passes_evonorms():
    assert lightweight_rejection(graph(("sigmoid", 3))) == "no dependency on x"
    assert lightweight_rejection(graph(("mul", 3, 0))) == "affine in x"               # v1 * x: a channel scale
    assert lightweight_rejection(graph(("neg", 0), ("add", 0, 4))) == "affine in x"   # x + (-x) = 0
    assert lightweight_rejection(graph(("div", 0, 1))) == "non-finite on a probe"     # x / 0
    assert lightweight_rejection(graph(("tanh", 0))) is None                           # an activation alone is fine
    assert lightweight_rejection(EVONORM_B0) is None and lightweight_rejection(EVONORM_S0) is None


def test_worst_case_gradient_norm_starts_at_the_gradient_norm_and_ascends():
    torch.manual_seed(0)
    model = norm_act_resnet("evonorm_b0", 8, 10, 1, width=4).double()
    x, y = torch.randn(8, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,))
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    at_init = float(torch.sqrt(sum(g.square().sum() for g in grads)))
    assert worst_case_grad_norm(model, (x, y), steps=0, step_size=0.1) == pytest.approx(at_init)
    assert worst_case_grad_norm(model, (x, y), steps=3, step_size=0.1) > at_init


def test_evolution_selects_by_tournament_and_retires_the_oldest(monkeypatch):
    """With a fitness that counts the active nodes, every mutation child joins and the oldest member leaves."""
    def fake_evaluate(task, layer_graph, origin, seed=0):
        fitness = float(len(layer_graph.active()))
        return evolution.Candidate(layer_graph, origin, "valid", fitness, fitness)

    monkeypatch.setattr(evolution, "evaluate_candidate", fake_evaluate)
    result = regularized_evolution(None, population_size=4, cycles=6, tournament_size=4, num_nodes=5, seed=0)
    assert [c.origin for c in result.history] == ["random"] * 4 + ["mutation"] * 6
    assert result.population == result.history[-4:]                                    # aging
    assert len({str(c.graph) for c in result.history}) == 10                           # no layer trained twice
    for c in result.history:
        assert lightweight_rejection(c.graph) is None
    assert result.best.val_accuracy == max(c.val_accuracy for c in result.history)
    assert len(result.random_candidates) == 4


# ----------------------------------------------------------------------------- presets and training


@pytest.mark.parametrize("name", ["resnet20_evonorm_b0", "resnet20_evonorm_s0"])
def test_presets_add_one_v1_per_channel_to_resnet20(name):
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    model = archzoo.create_model(name)
    assert n(model) == 270_410 == n(archzoo.create_model("resnet20")) + 16 + 6 * 16 + 6 * 32 + 6 * 64
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())             # the layer is the activation


def test_an_s0_network_fits_a_fixed_batch():
    torch.manual_seed(0)
    model = norm_act_resnet("evonorm_s0", 8, 4, 1, width=4)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = F.cross_entropy(model(x), y).item()
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert F.cross_entropy(model(x), y).item() < 0.5 * first


# ----------------------------------------------------------------------------- claims


def test_per_worker_statistics_change_bn_relu_and_leave_s0_unchanged():
    torch.manual_seed(0)
    x = torch.randn(8, 4, 5, 5, dtype=torch.float64)
    s0 = randomize(EvoNormS0(4, groups=2)).double().train()
    torch.testing.assert_close(PerWorker(s0, 2)(x), s0(x))                # why the claim runs S0 at 2 per worker only
    bn = torch.nn.Sequential(torch.nn.BatchNorm2d(4), torch.nn.ReLU()).double().train()
    assert not torch.allclose(PerWorker(bn, 2)(x), bn(x))                  # BN's statistics come from 2 images


def test_s0_batch_independence_quick_claim_sweeps_each_setting(quick_claim):
    metrics = quick_claim("evonorm", "s0_batch_independence")["metrics"]
    assert set(metrics["error"]) == {"bn_relu@8", "bn_relu@2", "evonorm_s0@2"}
    assert all(set(v) == {"0.1"} for v in metrics["val_error"].values())  # one validation error per swept lr
    error = metrics["error"]
    assert metrics["bn_small_minus_s0"] == pytest.approx(error["bn_relu@2"] - error["evonorm_s0@2"])


def test_random_search_shares_evolutions_first_candidates_and_evaluates_its_budget(monkeypatch):
    """Drawn from the same random stream, random search starts with evolution's initial population; with a shared
    cache no layer is trained twice, and each search records exactly its budget of candidates."""
    calls = []

    def fake_evaluate(task, layer_graph, origin, seed=0):
        calls.append(str(layer_graph))
        fitness = float(len(layer_graph.active()))
        return evolution.Candidate(layer_graph, origin, "valid", fitness, fitness)

    monkeypatch.setattr(evolution, "evaluate_candidate", fake_evaluate)
    cache = {}
    evo = regularized_evolution(None, population_size=3, cycles=5, tournament_size=2, num_nodes=5, seed=1, cache=cache)
    rnd = random_search(None, budget=len(evo.history), num_nodes=5, seed=1, cache=cache)
    assert len(rnd.history) == len(evo.history) == 8
    assert [str(c.graph) for c in rnd.history[:3]] == [str(c.graph) for c in evo.history[:3]]
    assert all(c.origin == "random" for c in rnd.history)
    assert len(calls) == len(set(calls)) == len({str(c.graph) for c in evo.history + rnd.history})
    assert rnd.best.val_accuracy == max(c.val_accuracy for c in rnd.history)


def test_search_beats_random_quick_claim_compares_equal_budgets(quick_claim):
    metrics = quick_claim("evonorm", "search_beats_random")["metrics"]
    (search,) = metrics["searches"]
    assert len(search["evolution"]["history"]) == len(search["random"]["history"]) == search["budget"]
    assert search["shared_first_candidates"] >= 2                          # at least the initial population
    assert metrics["evolution_minus_random"] == pytest.approx(
        search["evolution"]["retrained_test_accuracy"] - search["random"]["retrained_test_accuracy"])
