"""Performer (Choromanski et al. 2020, arXiv:2009.14794): random features, ORFs, FAVOR+ forms, the attention, claims."""

import functools
import math

import pytest
import torch
from scipy import stats

import archzoo
from archzoo.core import FullAttention, SequenceTransformer, Transformer
from archzoo.papers.performer import (
    PerformerAttention,
    draw_projection,
    favor_bidirectional,
    favor_unidirectional,
    random_features,
    relu_features,
    softmax_kernel_mse,
)

D64 = torch.float64


def pair(d: int, norm: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, d, generator=g, dtype=D64)
    return norm * x / x.norm(), norm * y / y.norm()


def per_sample_estimates(x, y, omega, kernel):
    """The N single-feature estimates of SM(x, y) whose mean is the N-feature estimate phi(x)^T phi(y)."""
    n = omega.shape[0]
    prod = random_features(x, omega, kernel) * random_features(y, omega, kernel)        # (N,) or (2N,)
    return n * (prod[:n] + prod[n:]) if prod.shape[-1] == 2 * n else n * prod


@pytest.mark.parametrize("kernel", ["softmax", "softmax_hyp", "softmax_trig"])
def test_softmax_features_are_unbiased_with_the_mse_of_lemma2(kernel):
    d, samples, m = 6, 400_000, 16
    x, y = pair(d, 0.5)
    omega = torch.randn(samples, d, generator=torch.Generator().manual_seed(1), dtype=D64)   # i.i.d. w
    est = per_sample_estimates(x, y, omega, kernel)
    sm = torch.exp(x @ y)
    assert abs(est.mean() - sm) < 4 * est.std() / math.sqrt(samples)                        # E[phi^T phi] = SM
    sq = (est - sm).pow(2)                                      # m-feature MSE = E[(one estimate - SM)^2] / m
    assert abs(sq.mean() / m - softmax_kernel_mse(x, y, m, kernel)) < 4 * sq.std() / math.sqrt(samples) / m
    assert sq.std() / math.sqrt(samples) < 0.05 * sq.mean()                              # a test that can fail


def test_trig_mse_explodes_where_the_kernel_is_small_and_positive_mse_vanishes_lemma2():
    x, y = pair(8, 2.0)
    y = -x                                                                                   # SM(x, y) = e^{-4}
    assert softmax_kernel_mse(x, y, 16, "softmax") == 0                                      # x + y = 0
    assert softmax_kernel_mse(x, y, 16, "softmax_trig") > 1e4 * torch.exp(x @ y) ** 2


def test_relu_features_estimate_the_arccos_kernel_of_degree_one():
    x, y = pair(5, 1.3, seed=3)
    omega = torch.randn(400_000, 5, generator=torch.Generator().manual_seed(2), dtype=D64)
    est = per_sample_estimates(x, y, omega, "relu")
    t = torch.arccos(x @ y / (x.norm() * y.norm()))
    arccos = x.norm() * y.norm() * (torch.sin(t) + (math.pi - t) * torch.cos(t)) / (2 * math.pi)
    assert abs(est.mean() - arccos) < 4 * est.std() / math.sqrt(len(est))
    assert torch.all(relu_features(x, omega[:64], kernel_eps=1e-3) >= 1e-3)


def test_orthogonal_projection_is_orthogonal_within_blocks_with_chi_distributed_norms():
    d, m = 16, 3 * 16 + 5
    w = draw_projection(m, d, generator=torch.Generator().manual_seed(0), dtype=D64)
    assert w.shape == (m, d)
    for start in range(0, m, d):
        block = w[start:start + d]
        gram = block @ block.T
        torch.testing.assert_close(gram - torch.diag(gram.diagonal()), torch.zeros_like(gram), atol=1e-10, rtol=0)
    norms = draw_projection(16 * 400, d, generator=torch.Generator().manual_seed(1), dtype=D64).norm(dim=1)
    assert stats.kstest(norms.numpy(), stats.chi(d).cdf).pvalue > 0.01
    iid_norms = draw_projection(16 * 400, d, orthogonal=False, generator=torch.Generator().manual_seed(1)).norm(dim=1)
    assert stats.kstest(iid_norms.numpy(), stats.chi(d).cdf).pvalue > 0.01
    fixed = draw_projection(40, d, scaling="sqrt_d", generator=torch.Generator().manual_seed(2), dtype=D64)
    torch.testing.assert_close(fixed.norm(dim=1), torch.full((40,), math.sqrt(d), dtype=D64))


def test_orthogonal_rows_are_marginally_standard_gaussian():
    w = draw_projection(8 * 5000, 8, generator=torch.Generator().manual_seed(3), dtype=D64)
    torch.testing.assert_close(w.T @ w / len(w), torch.eye(8, dtype=D64), atol=0.03, rtol=0)   # E[w w^T] = I
    assert abs(float(w.mean())) < 0.01


def test_orthogonal_features_lower_the_mse_as_theorem2_bounds():
    d = m = 8
    draws = 100_000
    x, y = pair(d, 0.5)
    sm = torch.exp(x @ y)
    g = torch.Generator().manual_seed(0)
    mse, se = {}, {}
    for orthogonal in (True, False):
        omega = draw_projection(m * draws, d, orthogonal=orthogonal, generator=g, dtype=D64)   # `draws` blocks of m
        sq = (per_sample_estimates(x, y, omega, "softmax").view(draws, m).mean(1) - sm).pow(2)
        mse[orthogonal], se[orthogonal] = float(sq.mean()), float(sq.std()) / math.sqrt(draws)
    iid = float(softmax_kernel_mse(x, y, m, "softmax"))
    bound = iid - 2 * (m - 1) / (m * (d + 2)) * float(sm - torch.exp(-(x @ x + y @ y) / 2)) ** 2
    assert abs(mse[False] - iid) < 4 * se[False]                                     # Lemma 2 for i.i.d. w
    assert mse[True] < bound + 4 * se[True]                                          # Theorem 2
    assert mse[False] - mse[True] > 4 * math.hypot(se[True], se[False])              # a real improvement


def random_positive(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64) + 0.1


def test_bidirectional_favor_equals_its_quadratic_form():
    q, k = random_positive(2, 3, 20, 8), random_positive(2, 3, 30, 8, seed=1)
    v = torch.randn(2, 3, 30, 5, dtype=D64)
    num, den = favor_bidirectional(q, k, v)
    a = q @ k.transpose(-2, -1)                                                   # A_hat = Q' K'^T, (2, 3, 20, 30)
    torch.testing.assert_close(num, a @ v)
    torch.testing.assert_close(den, a.sum(-1))


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 64])
def test_causal_prefix_sums_equal_the_masked_quadratic_form_and_the_token_by_token_sums(chunk_size):
    q, k = random_positive(2, 3, 37, 8), random_positive(2, 3, 37, 8, seed=1)
    v = torch.randn(2, 3, 37, 5, dtype=D64)
    num, den = favor_unidirectional(q, k, v, chunk_size)
    a = (q @ k.transpose(-2, -1)).tril()                                          # tril(A_hat), Eq. 2
    torch.testing.assert_close(num, a @ v)
    torch.testing.assert_close(den, a.sum(-1))
    g = torch.einsum("bhjm,bhje->bhjme", k, v).cumsum(2)                          # G_i = sum_{j<=i} phi(k_j) v_j^T
    torch.testing.assert_close(num, torch.einsum("bhim,bhime->bhie", q, g))


def test_favor_unidirectional_gradients_are_exact():
    q, k = random_positive(1, 2, 9, 4).requires_grad_(), random_positive(1, 2, 9, 4, seed=1).requires_grad_()
    v = torch.randn(1, 2, 9, 3, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: favor_unidirectional(*t, chunk_size=4), (q, k, v))


def attention(kernel="softmax", **kw):
    torch.manual_seed(0)
    return PerformerAttention(16, heads=2, dim_head=8, nb_features=32, kernel=kernel, **kw).double().eval()


def quadratic_estimate(attn, x, mask=None, causal=False):
    """D_hat^{-1} phi(Q) phi(K)^T V from the unstabilized features of `features.py`, as an L x L matrix."""
    q, k, v = (t.unflatten(-1, (attn.heads, attn.dim_head)).transpose(1, 2) for t in
               (attn.to_q(x), attn.to_k(x), attn.to_v(x)))
    if attn.kernel == "relu":
        phi = functools.partial(relu_features, omega=attn.projection, kernel_eps=attn.kernel_eps)
    else:
        phi = functools.partial(random_features, omega=attn.projection, kernel=attn.kernel)
    a = phi(q * attn.dim_head ** -0.25) @ phi(k * attn.dim_head ** -0.25).transpose(-2, -1)   # (B, H, N, N)
    if mask is not None:
        a = a * mask[:, None, None, :]
    if causal:
        a = a.tril()
    out = (a @ v) / a.sum(-1, keepdim=True)
    return attn.to_out(out.transpose(1, 2).flatten(2))


@pytest.mark.parametrize("kernel", ["softmax", "softmax_hyp", "softmax_trig", "relu"])
@pytest.mark.parametrize("causal", [False, True])
def test_stabilized_attention_equals_the_unstabilized_estimate(kernel, causal):
    attn = attention(kernel)
    x = torch.randn(2, 23, 16, dtype=D64)
    mask = torch.rand(2, 23, generator=torch.Generator().manual_seed(0)) > 0.3
    mask[:, 0] = True                                                     # every causal prefix has a real key
    torch.testing.assert_close(attn(x, causal=causal), quadratic_estimate(attn, x, causal=causal))
    torch.testing.assert_close(attn(x, mask=mask, causal=causal), quadratic_estimate(attn, x, mask, causal))


def test_large_logits_stay_finite_in_float32_and_match_float64():
    attn = attention().float()
    x = 30 * torch.randn(1, 40, 16)
    out = attn(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), attention()(x.double()), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
def test_many_features_approach_softmax_attention(causal):
    torch.manual_seed(0)
    perf = PerformerAttention(16, heads=2, dim_head=8, nb_features=8192).double()
    full = FullAttention(16, heads=2, dim_head=8).double()
    full.load_state_dict({k: v for k, v in perf.state_dict().items() if k != "projection"})   # same W^Q..W^O names
    x = 0.5 * torch.randn(2, 30, 16, dtype=D64)
    err = (perf(x, causal=causal) - full(x, causal=causal)).norm() / full(x, causal=causal).norm()
    assert err < 0.02


def test_padding_mask_equals_attending_to_the_kept_keys_only():
    attn = attention()
    x, ctx = torch.randn(2, 5, 16, dtype=D64), torch.randn(2, 9, 16, dtype=D64)
    mask = torch.tensor([[True] * 6 + [False] * 3, [False, True] * 4 + [True]])
    out = attn(x, context=ctx, mask=mask)
    for b in range(2):
        torch.testing.assert_close(out[b], attn(x[b:b + 1], context=ctx[b:b + 1, mask[b]])[0])
    none = attn(x, context=ctx, mask=torch.zeros(2, 9, dtype=torch.bool))          # no key: zero, then W^O's bias
    torch.testing.assert_close(none, attn.to_out.bias.expand(2, 5, 16))


def test_gradients_of_the_attention_are_exact():
    attn = PerformerAttention(8, heads=2, dim_head=4, nb_features=6).double()
    x = torch.randn(1, 7, 8, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: attn(t), (x,))
    assert torch.autograd.gradcheck(lambda t: attn(t, causal=True), (x,))


def test_features_are_redrawn_on_schedule_in_training_only():
    attn = PerformerAttention(16, heads=2, dim_head=8, nb_features=8, feature_redraw_interval=3)
    x = torch.randn(1, 4, 16)
    first = attn.projection.clone()
    for _ in range(3):
        attn(x)
    assert torch.equal(attn.projection, first)
    attn(x)                                                                       # the 4th call redraws
    assert not torch.equal(attn.projection, first)
    second = attn.projection.clone()
    attn.eval()
    for _ in range(5):
        attn(x)
    assert torch.equal(attn.projection, second)
    fixed = PerformerAttention(16, heads=2, dim_head=8, nb_features=8, feature_redraw_interval=None)
    before = fixed.projection.clone()
    for _ in range(5):
        fixed(x)
    assert torch.equal(fixed.projection, before)


def test_performer_transformer_learns_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = SequenceTransformer(12, 12, dim=32, depth=2, heads=2, dim_head=16, max_len=32, attention="performer",
                                attention_kwargs=dict(nb_features=32), causal=True)
    ids = torch.randint(0, 12, (8, 32))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    def loss():
        return torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())

    losses = fixed_batch_losses(loss, opt, 40)
    assert losses[-1] < 0.6 * losses[0]


def test_registered_attentions_plug_into_the_transformer():
    x = torch.randn(2, 10, 32)
    for name in ("performer", "performer_relu"):
        t = Transformer(32, 1, heads=2, dim_head=16, attention=name, attention_kwargs=dict(nb_features=16))
        assert t(x).shape == t(x, causal=True).shape == (2, 10, 32)
    assert Transformer(32, 1, 2, 16, attention="performer_relu").blocks[0].attn.kernel == "relu"


def test_bad_input_raises_value_errors_naming_the_shapes():
    attn = attention()
    with pytest.raises(ValueError, match=r"\(B, N, D=16\).*\(2, 5, 8\)"):
        attn(torch.randn(2, 5, 8, dtype=D64))
    with pytest.raises(ValueError, match="mask"):
        attn(torch.randn(2, 5, 16, dtype=D64), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="context"):
        attn(torch.randn(2, 5, 16, dtype=D64), context=torch.randn(2, 6, 16, dtype=D64), causal=True)
    with pytest.raises(ValueError, match="dropout"):
        PerformerAttention(16, dropout=0.1)
    with pytest.raises(ValueError, match="kernel"):
        PerformerAttention(16, kernel="gaussian")
    with pytest.raises(ValueError, match="feature_redraw_interval"):
        PerformerAttention(16, feature_redraw_interval=0)


def test_preset_parameter_count():
    model = archzoo.create_model("performer_small", feature_redraw_interval=None)
    assert sum(p.numel() for p in model.parameters()) == 182_282


@pytest.mark.reference
def test_matches_performer_pytorch_with_the_same_weights_and_features(monkeypatch):
    pp = pytest.importorskip("performer_pytorch.performer_pytorch")
    monkeypatch.setattr(pp, "softmax_kernel", functools.partial(pp.softmax_kernel, eps=0.0))   # its stabilizer off
    torch.manual_seed(0)
    ref = pp.SelfAttention(32, heads=4, dim_head=8, nb_features=24).double()
    ours = PerformerAttention(32, heads=4, dim_head=8, nb_features=24).double()
    ours.load_state_dict({**{k: v for k, v in ref.state_dict().items() if k.startswith("to_")},
                          "projection": ref.fast_attention.projection_matrix})
    x = torch.randn(2, 50, 32, dtype=D64)
    torch.testing.assert_close(ours(x), ref(x))
    relu_ref = pp.SelfAttention(32, heads=4, dim_head=8, nb_features=24, generalized_attention=True).double()
    relu = PerformerAttention(32, heads=4, dim_head=8, nb_features=24, kernel="relu").double()
    relu.load_state_dict({**{k: v for k, v in relu_ref.state_dict().items() if k.startswith("to_")},
                          "projection": relu_ref.fast_attention.projection_matrix})
    # performer-pytorch's ReLU features lack the 1/sqrt(m), which cancels; so do equal kernel_eps ratios
    relu.kernel_eps = 1e-3 / math.sqrt(24)
    torch.testing.assert_close(relu(x), relu_ref(x))
