"""Hopfield Networks is All You Need (Ramsauer et al. 2020, arXiv:2008.02217): energy, update rule, layers, claims."""

import math

import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.core import FullAttention, Transformer
from archzoo.papers.hopfield import (
    Hopfield,
    HopfieldLayer,
    HopfieldPooling,
    MILClassifier,
    classical_retrieve,
    energy,
    hebbian_weights,
    lse,
    make_witness_bags,
    oracle_accuracy,
    update,
)

D64 = torch.float64


def patterns(n: int, d: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=D64)


# ----------------------------------------------------------------------------- energy and update rule (Sec. 2)


def test_the_update_is_softmax_attention_with_beta_one_over_sqrt_dk():
    xi, X = patterns(5, 16, seed=1), patterns(30, 16, seed=2)              # state (S, d), stored (N, d)
    expected = F.scaled_dot_product_attention(xi[None], X[None], X[None])[0]   # scale 1/sqrt(16): keys = values
    torch.testing.assert_close(update(xi, X, beta=16 ** -0.5), expected, rtol=1e-12, atol=1e-12)


def test_the_update_is_the_gradient_of_the_concave_part_of_the_energy():
    """Eq. 3 is the concave-convex procedure: xi_new = grad_xi lse(beta, X^T xi) (the convex term's gradient is xi)."""
    xi, X = patterns(4, 8, seed=3).requires_grad_(), patterns(12, 8, seed=4)
    (grad,) = torch.autograd.grad(lse(0.7, xi @ X.T).sum(), xi)
    torch.testing.assert_close(grad, update(xi.detach(), X, 0.7), rtol=1e-12, atol=1e-12)
    (grad_e,) = torch.autograd.grad(energy(xi, X, 0.7).sum(), xi)
    torch.testing.assert_close(grad_e, xi.detach() - update(xi.detach(), X, 0.7), rtol=1e-12, atol=1e-12)


def test_the_energy_matches_its_definition_term_by_term():
    xi, X, beta = patterns(1, 6, seed=5)[0], patterns(9, 6, seed=6), 1.7
    m = max(float(x.norm()) for x in X)
    expected = (-math.log(sum(math.exp(beta * float(x @ xi)) for x in X)) / beta + 0.5 * float(xi @ xi)
                + math.log(9) / beta + 0.5 * m ** 2)
    assert energy(xi[None], X, beta).item() == pytest.approx(expected, rel=1e-12)


def test_the_energy_never_increases_under_the_update_and_stays_in_its_bounds():
    """Theorem 1 (global convergence of the CCCP), over many random memories, states, betas and pattern scales;
    E >= 0 everywhere and E <= 2 M^2 in the convex hull of the patterns, where every update lands (Lemma A1)."""
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        n, d = int(torch.randint(2, 40, (1,), generator=g)), int(torch.randint(2, 20, (1,), generator=g))
        beta = float(10 ** (torch.rand(1, generator=g) * 3 - 1.5))                     # 0.03 .. 30
        X = torch.randn(n, d, generator=g, dtype=D64) * float(torch.rand(1, generator=g) * 3 + 0.1)
        xi = torch.randn(8, d, generator=g, dtype=D64) * 2
        m2 = float(X.norm(dim=1).max()) ** 2
        e = energy(xi, X, beta)
        assert (e >= -1e-9).all()
        for _ in range(5):
            xi = update(xi, X, beta)
            e_new = energy(xi, X, beta)
            assert (e_new <= e + 1e-9 * (1 + e.abs())).all(), (seed, (e_new - e).max())
            assert (e_new >= -1e-9).all() and (e_new <= 2 * m2 + 1e-9).all()
            e = e_new


def test_a_well_separated_pattern_is_retrieved_in_one_update_within_the_exponential_bound():
    """The exponentially small retrieval error (Sec. 2, Theorems 3-4) in the form that follows from the softmax
    weights: f(xi) - x_i = sum_j p_j (x_j - x_i), so |f(xi) - x_i| <= 2 M (1 - p_i) <= 2 (N - 1) exp(-beta Delta~) M
    with Delta~ = min_j xi^T (x_i - x_j); a stored pattern is a fixed point up to the same bound."""
    X = torch.sign(patterns(200, 64, seed=7))                                     # +-1 patterns, M = 8
    m = float(X.norm(dim=1).max())
    g = torch.Generator().manual_seed(8)
    for i in range(20):
        xi = torch.where(torch.rand(64, generator=g, dtype=D64) < 0.3, torch.zeros(64, dtype=D64), X[i])   # 30% masked
        scores = X @ xi
        separation = float(scores[i] - torch.cat([scores[:i], scores[i + 1:]]).max())
        beta = 1.0
        bound = 2 * (len(X) - 1) * math.exp(-beta * separation) * m
        error = float((update(xi[None], X, beta)[0] - X[i]).norm())
        assert error <= bound and bound < 1e-3
        fixed = X[i][None]
        assert float((update(fixed, X, beta)[0] - X[i]).norm()) < 1e-8
    assert (torch.sign(update(X[:20] * (torch.rand(20, 64, generator=g) > 0.3), X, 1.0)) == X[:20]).all()


def test_a_small_beta_averages_the_patterns_into_a_metastable_state():
    X = torch.sign(patterns(64, 64, seed=9))
    out = update(X[:4], X, beta=1e-4)                                             # beta -> 0: the mean of all
    torch.testing.assert_close(out, X.mean(0).expand(4, -1), atol=1e-2, rtol=0)


def test_the_energy_and_update_name_bad_arguments():
    with pytest.raises(ValueError, match="expected shape"):
        update(torch.zeros(3, 5, dtype=D64), torch.zeros(4, 6, dtype=D64), 1.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        energy(torch.zeros(1, 5), torch.zeros(4, 5), 0.0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        update(torch.zeros(1, 5), torch.zeros(4, 5), 1.0, steps=0)


def test_the_classical_network_recalls_within_its_capacity_and_not_beyond():
    g = torch.Generator().manual_seed(0)
    X = torch.sign(torch.randn(3, 64, generator=g, dtype=D64))                    # 3 < d / (4 ln d)
    W = hebbian_weights(X)
    assert torch.equal(W.diagonal(), torch.zeros(64, dtype=D64)) and torch.equal(W, W.T)
    masked = X * (torch.rand(3, 64, generator=g) > 0.4)
    assert torch.equal(classical_retrieve(masked, W, generator=g), X)
    many = torch.sign(torch.randn(64, 64, generator=g, dtype=D64))                # N = d, 7 x its capacity
    assert not torch.equal(classical_retrieve(many, hebbian_weights(many), generator=g), many)


# ----------------------------------------------------------------------------- layers (Sec. 3)


def copy_into(target: torch.nn.Module, source: torch.nn.Module) -> torch.nn.Module:
    target.load_state_dict(source.state_dict())
    return target


@pytest.mark.parametrize("causal", [False, True])
def test_the_hopfield_layer_with_one_update_is_full_attention(causal):
    torch.manual_seed(0)
    full = FullAttention(16, heads=2, dim_head=8).double()
    hop = copy_into(Hopfield(16, heads=2, dim_head=8).double(), full)
    x = torch.randn(3, 10, 16, dtype=D64)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[0, 6:] = False
    mask[2] = False                                                              # no key at all: zero output
    for m in (None, mask):
        torch.testing.assert_close(hop(x, mask=m, causal=causal), full(x, mask=m, causal=causal), rtol=1e-12,
                                   atol=1e-12)
    ctx = torch.randn(3, 7, 16, dtype=D64)
    if not causal:
        torch.testing.assert_close(hop(x, context=ctx), full(x, context=ctx), rtol=1e-12, atol=1e-12)


def test_update_steps_iterate_the_update_rule_in_the_associative_space():
    torch.manual_seed(1)
    hop = Hopfield(12, heads=3, dim_head=4, beta=0.9, update_steps=3).double()
    r, y = torch.randn(2, 5, 12, dtype=D64), torch.randn(2, 9, 12, dtype=D64)
    split = lambda t: t.view(2, -1, 3, 4).transpose(1, 2)                      # noqa: E731  (B, H, n, d)
    q, k, v = split(hop.to_q(r)), split(hop.to_k(y)), split(hop.to_v(y))
    q = update(q, k, 0.9, steps=2)                                               # Eq. 3 twice, then associate
    out = torch.softmax(0.9 * q @ k.transpose(-2, -1), -1) @ v
    expected = hop.to_out(out.transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(hop(r, context=y), expected, rtol=1e-12, atol=1e-12)


def test_update_steps_keep_padding_and_causality():
    torch.manual_seed(2)
    hop = Hopfield(8, heads=2, dim_head=4, update_steps=4).double()
    x = torch.randn(2, 9, 8, dtype=D64)
    later = x.clone()
    later[:, 5:] = torch.randn(2, 4, 8, dtype=D64)
    torch.testing.assert_close(hop(later, causal=True)[:, :5], hop(x, causal=True)[:, :5])
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, 6:] = False
    other = torch.cat([x[:, :6], 5 * torch.randn(2, 3, 8, dtype=D64)], 1)
    torch.testing.assert_close(hop(other, mask=mask)[mask], hop(x, mask=mask)[mask])


def test_hopfield_is_an_attention_of_the_transformer():
    layers = Transformer(16, 2, heads=2, dim_head=8, attention="hopfield", attention_kwargs=dict(update_steps=2))
    assert isinstance(layers.blocks[0].attn, Hopfield) and "hopfield" in archzoo.get_paper("hopfield").attentions
    assert layers(torch.randn(2, 7, 16), causal=True).shape == (2, 7, 16)
    with pytest.raises(ValueError, match="beta must be > 0"):
        Hopfield(16, beta=-1.0)


def test_hopfield_pooling_is_a_hopfield_layer_with_learned_queries_and_ignores_the_order():
    torch.manual_seed(3)
    pool = HopfieldPooling(16, heads=2, dim_head=8, num_queries=3).double()
    y = torch.randn(4, 11, 16, dtype=D64)
    out = pool(y)
    assert out.shape == (4, 3, 16)
    torch.testing.assert_close(out, pool.hopfield(pool.query.expand(4, -1, -1), context=y))
    torch.testing.assert_close(pool(y[:, torch.randperm(11)]), out)
    mask = torch.ones(4, 11, dtype=torch.bool)
    mask[:, 8:] = False
    torch.testing.assert_close(pool(y, mask=mask), pool(y[:, :8]))             # padded elements are not stored
    with pytest.raises(ValueError, match="at least one element"):
        pool(y[:, :0])


def test_hopfield_layer_queries_its_learned_stored_patterns():
    torch.manual_seed(4)
    layer = HopfieldLayer(16, num_patterns=20, heads=2, dim_head=8, beta=50.0).double()
    r = torch.randn(3, 5, 16, dtype=D64)
    torch.testing.assert_close(layer(r), layer.hopfield(r, context=layer.stored.expand(3, -1, -1)))
    torch.testing.assert_close(layer(r)[1:2], layer(r[1:2]))                      # each input on its own
    assert sum(p.numel() for p in layer.parameters()) == 20 * 16 + 3 * 16 * 16 + 16 * 16 + 16


# ----------------------------------------------------------------------------- multiple-instance learning


def test_witness_bags_hold_the_witnesses_they_say():
    x, y, witness, u = make_witness_bags(400, bag_size=50, dim=8, witnesses=2, signal=6.0, seed=1)
    assert x.shape == (400, 50, 8) and y.sum() == 200 and u.norm() == pytest.approx(1.0)
    assert torch.equal(witness.sum(1), 2 * y)                                     # 2 witnesses iff positive
    s = x @ u
    assert abs(float(s[witness].mean()) - 6.0) < 0.2 and abs(float(s[~witness].mean())) < 0.05
    x2, *_ = make_witness_bags(400, bag_size=50, dim=8, witnesses=2, signal=6.0, seed=1)
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="witnesses must be in 1..bag_size=50"):
        make_witness_bags(4, bag_size=50, witnesses=51)


def test_the_bayes_optimal_accuracy_goes_from_chance_to_certainty_with_the_signal():
    x, y, _, u = make_witness_bags(2000, bag_size=50, dim=8, signal=0.0, seed=2)
    assert abs(oracle_accuracy(x, y, u, 1e-3) - 50) < 5
    x, y, _, u = make_witness_bags(2000, bag_size=50, dim=8, signal=8.0, seed=2)
    assert oracle_accuracy(x, y, u, 8.0) > 99.5
    data = archzoo.data.load_dataset("witness_bags", n_train=8, n_test=6, bag_size=5)
    assert len(data.train) == 8 and data.test.tensors[0].shape == (6, 5, 16)


@pytest.mark.parametrize("pooling", ["hopfield", "mean", "max"])
def test_the_mil_classifier_is_invariant_to_the_order_of_the_instances(pooling):
    torch.manual_seed(5)
    model = MILClassifier(3, in_features=8, pooling=pooling).double().eval()
    x = torch.randn(4, 13, 8, dtype=D64)
    torch.testing.assert_close(model(x[:, torch.randperm(13)]), model(x))
    assert model(x).shape == (4, 3) and model.forward_head(model.forward_features(x), pre_logits=True).shape == (
        4, model.num_features)


def test_the_mil_classifier_names_bad_inputs():
    model = MILClassifier(2, in_features=8)
    with pytest.raises(ValueError, match=r"expected shape \(B, N, D=8\)"):
        model(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="at least one instance"):
        model(torch.randn(2, 0, 8))
    with pytest.raises(ValueError, match="expected a floating-point tensor"):
        model(torch.ones(2, 5, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="a bag of 6 instances is longer than max_len=5"):
        MILClassifier(2, in_features=8, max_len=5)(torch.randn(1, 6, 8))
    with pytest.raises(ValueError, match="exactly one of in_features and vocab_size"):
        MILClassifier(2, in_features=8, vocab_size=10)
    with pytest.raises(ValueError, match="pooling must be one of"):
        MILClassifier(2, in_features=8, pooling="sum")


def test_hopfield_pooling_learns_a_fixed_batch_of_bags(fixed_batch_losses):
    torch.manual_seed(6)
    x, y, _, _ = make_witness_bags(32, bag_size=20, dim=8, signal=5.0, seed=3)
    model = MILClassifier(2, in_features=8)
    losses = fixed_batch_losses(lambda: F.cross_entropy(model(x), y), torch.optim.Adam(model.parameters(), 3e-3), 60)
    assert losses[-1] < 0.5 * losses[0]


# ----------------------------------------------------------------------------- presets and claims


def test_preset_parameter_counts():
    """Counts from our configurations (dim 64, 4 heads of 16; see README.md)."""
    counts = {name: sum(p.numel() for p in archzoo.create_model(name).parameters())
              for name in ("hopfield_small", "hopfield_mil")}
    # hopfield_small: embedding 256 x 64 + positions 1024 x 64 + 2 x (attention 3 x 64 x 64 + 64 x 64 + 64,
    # MLP 64 x 256 + 256 + 256 x 64 + 64, two LayerNorms 4 x 64) + final LayerNorm 128 + head 64 x 10 + 10
    assert counts["hopfield_small"] == 256 * 64 + 1024 * 64 + 2 * (4 * 64 * 64 + 64 + 64 * 256 + 256 + 256 * 64
                                                                   + 64 + 4 * 64) + 128 + 650 == 182_282
    # hopfield_mil: embedding 256 x 64 + query 64 + attention 4 x 64 x 64 + 64 + head 64 x 2 + 2
    assert counts["hopfield_mil"] == 256 * 64 + 64 + 4 * 64 * 64 + 64 + 130 == 33_026
    assert archzoo.create_model("hopfield_mil")(torch.randint(256, (2, 30))).shape == (2, 2)


def test_one_step_retrieval_quick_claim_passes_with_the_control_failing(quick_claim):
    record = quick_claim("hopfield", "one_step_retrieval")
    metrics = record["metrics"]
    assert record["passed"]
    assert metrics["modern_one_update"]["masked, beta=1.0"]["512"] >= 0.99
    assert metrics["classical_converged"]["masked"]["512"] <= 0.05


def test_mil_quick_claim_reports_every_pooling_and_the_bayes_optimum(quick_claim):
    metrics = quick_claim("hopfield", "mil_rare_witnesses")["metrics"]
    assert set(metrics["test_accuracy"]["20"]) == {"hopfield", "mean", "max"}
    assert 90 <= metrics["bayes_optimal"]["20"] <= 100
