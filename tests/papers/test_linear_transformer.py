"""Linear transformer (Katharopoulos et al. 2020, arXiv:2006.16236): the feature map, the non-causal, causal and
recurrent forms against the quadratic definition, generation, interfaces, the reference and the claims."""


import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import archzoo
from archzoo.core import FullAttention, SequenceTransformer, Transformer
from archzoo.engine.bench import peak_memory
from archzoo.papers.linear_transformer import (
    IncrementalDecoder,
    KeyValueSums,
    LinearAttention,
    causal_linear_attention,
    elu_feature_map,
    generate,
    linear_attention,
)
from archzoo.papers.linear_transformer.claims import quadratic_causal_attention, recurrent_attention


def quadratic_attention(attn: LinearAttention, x, context=None, mask=None, causal=False):
    """Eq. 4 (and Eq. 8 with causal) written out with an (N x M) weight matrix, padded keys weighted 0."""
    kv = x if context is None else context
    q = attn.phi_q(rearrange(attn.to_q(x), "b n (h d) -> b h n d", h=attn.heads))
    k = attn.phi_k(rearrange(attn.to_k(kv), "b m (h d) -> b h m d", h=attn.heads))
    v = rearrange(attn.to_v(kv), "b m (h d) -> b h m d", h=attn.heads)
    weights = q @ k.transpose(-2, -1)                                   # sim(Q_i, K_j) = phi(Q_i)^T phi(K_j)
    if causal:
        weights = weights.tril()
    if mask is not None:
        weights = weights * mask[:, None, None, :].to(weights.dtype)
    out = (weights @ v) / (weights.sum(-1, keepdim=True) + attn.eps)
    return attn.to_out(rearrange(out, "b h n e -> b n (h e)"))


def layer(chunk_size=64, **kw) -> LinearAttention:
    torch.manual_seed(0)
    return LinearAttention(24, heads=3, dim_head=8, chunk_size=chunk_size, **kw).double()


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


# ----------------------------------------------------------------------------- the feature map (Eq. 7)


def test_feature_map_is_elu_plus_one_and_positive():
    x = torch.linspace(-30, 5, 1001, dtype=torch.float64)
    torch.testing.assert_close(elu_feature_map(x), F.elu(x) + 1, rtol=0, atol=0)
    assert bool((elu_feature_map(x) > 0).all())


def test_feature_map_gradient_from_its_output_alone_passes_gradcheck():
    x = randn(4, 7).mul(2).requires_grad_()
    assert torch.autograd.gradcheck(elu_feature_map, (x,))
    grad, = torch.autograd.grad(elu_feature_map(x).sum(), x)
    torch.testing.assert_close(grad, torch.where(x > 0, torch.ones_like(x), x.exp()))   # elu'(x)


# ----------------------------------------------------------------------------- non-causal form (Eq. 5-6)


def test_non_causal_form_equals_the_quadratic_kernel_attention():
    attn, x = layer(), randn(2, 13, 24)
    torch.testing.assert_close(attn(x), quadratic_attention(attn, x))


def test_padded_keys_get_no_weight_exactly():
    attn, x = layer(), randn(2, 13, 24)
    mask = torch.ones(2, 13, dtype=torch.bool)
    mask[0, 9:], mask[1, :4] = False, False
    torch.testing.assert_close(attn(x, mask=mask), quadratic_attention(attn, x, mask=mask))
    changed = x.clone()
    changed[0, 9:], changed[1, :4] = 100.0, -100.0                  # padded tokens' content cannot matter
    torch.testing.assert_close(attn(changed, mask=mask)[0, :9], attn(x, mask=mask)[0, :9])


def test_cross_attention_takes_keys_and_values_from_the_context():
    attn = layer(context_dim=10)
    x, context = randn(2, 5, 24), randn(2, 17, 10)
    torch.testing.assert_close(attn(x, context=context), quadratic_attention(attn, x, context=context))


def test_a_query_with_no_key_outputs_zero_as_full_attention_does():
    attn, x = layer(), randn(2, 6, 24)
    mask = torch.tensor([[False] * 6, [True] * 6])
    out = attn(x, mask=mask)
    assert torch.count_nonzero(out[0]) == 0 and torch.count_nonzero(out[1]) > 0
    left_padded = torch.tensor([[False, False, True, True, True, True]] * 2)
    causal = attn(x, mask=left_padded, causal=True)
    assert torch.count_nonzero(causal[:, :2]) == 0
    torch.testing.assert_close(causal[:, 2:], quadratic_attention(attn, x, mask=left_padded, causal=True)[:, 2:])


def test_key_value_sums_and_their_hand_written_gradients():
    phi_k, v = randn(2, 3, 11, 4).exp().requires_grad_(), randn(2, 3, 11, 5).requires_grad_()
    kv, z = KeyValueSums.apply(phi_k, v).split([5, 1], dim=-1)
    torch.testing.assert_close(kv, phi_k.transpose(-2, -1) @ v)                  # sum_j phi(K_j) V_j^T
    torch.testing.assert_close(z.squeeze(-1), phi_k.sum(-2))                    # sum_j phi(K_j)
    assert torch.autograd.gradcheck(KeyValueSums.apply, (phi_k, v))
    assert torch.autograd.gradgradcheck(KeyValueSums.apply, (phi_k, v))
    shared_keys, values = randn(3, 11, 4).exp().requires_grad_(), randn(2, 1, 11, 5).requires_grad_()
    assert torch.autograd.gradcheck(KeyValueSums.apply, (shared_keys, values))    # leading dims broadcast


def test_non_causal_gradients_match_the_quadratic_form():
    attn, x = layer(), randn(2, 10, 24).requires_grad_()
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    g1 = torch.autograd.grad(attn(x, mask=mask).square().sum(), [x, *attn.parameters()])
    g2 = torch.autograd.grad(quadratic_attention(attn, x, mask=mask).square().sum(), [x, *attn.parameters()])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_cost_is_linear_no_n_by_n_matrix_is_formed():
    attn = LinearAttention(64, heads=1, dim_head=64)
    small, large = (peak_memory(attn, (torch.randn(1, n, 64),), backward=False) for n in (1024, 4096))
    assert large / small < 4.5                                     # O(N): x4 length -> about x4 memory
    assert large < 4096 * 4096 * 4 / 8                             # an (N x N) float32 matrix would be 64 MiB


# ----------------------------------------------------------------------------- causal forms (Eq. 8-12, 18-20)


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 64])
def test_causal_parallel_form_equals_the_quadratic_masked_form(chunk_size):
    attn, x = layer(chunk_size), randn(2, 23, 24)                  # 23: chunk sizes that do not divide N
    torch.testing.assert_close(attn(x, causal=True), quadratic_causal_attention(attn, x))
    torch.testing.assert_close(attn(x, causal=True), quadratic_attention(attn, x, causal=True))


def test_causal_form_with_padding_equals_the_quadratic_masked_form():
    attn, x = layer(5), randn(2, 19, 24)
    mask = torch.rand(2, 19, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[:, 0] = True
    torch.testing.assert_close(attn(x, mask=mask, causal=True), quadratic_attention(attn, x, mask=mask, causal=True))


def test_step_by_step_recurrence_equals_the_causal_parallel_form():
    attn, x = layer(8), randn(3, 37, 24)
    torch.testing.assert_close(recurrent_attention(attn, x), attn(x, causal=True), rtol=0, atol=1e-12)


def test_prefill_state_is_the_prefix_sums_and_continues_the_sequence():
    attn, x = layer(4), randn(2, 15, 24)
    y1, state = attn.prefill(x[:, :9])
    y2, state = attn.prefill(x[:, 9:], state)
    torch.testing.assert_close(torch.cat([y1, y2], 1), attn(x, causal=True))
    phi_k = elu_feature_map(rearrange(attn.to_k(x), "b n (h d) -> b h n d", h=3))
    v = rearrange(attn.to_v(x), "b n (h d) -> b h n d", h=3)
    torch.testing.assert_close(state.S, phi_k.transpose(-2, -1) @ v)   # s_N = sum_j phi(K_j) V_j^T (Eq. 18)
    torch.testing.assert_close(state.z, phi_k.sum(-2))                  # z_N = sum_j phi(K_j) (Eq. 19)


def test_functional_forms_agree_on_random_features():
    q, k, v = randn(2, 3, 11, 4).exp(), randn(2, 3, 11, 4).exp(), randn(2, 3, 11, 5)
    out, _ = causal_linear_attention(q, k, v, chunk_size=11)
    torch.testing.assert_close(out[:, :, -1], linear_attention(q, k, v)[:, :, -1])   # last query sees every key


def test_causal_gradients_match_the_quadratic_form():
    attn, x = layer(4), randn(2, 10, 24).requires_grad_()
    g1, = torch.autograd.grad(attn(x, causal=True).square().sum(), x)
    g2, = torch.autograd.grad(quadratic_causal_attention(attn, x).square().sum(), x)
    torch.testing.assert_close(g1, g2)


# ----------------------------------------------------------------------------- the protocol and interfaces


def test_weights_map_one_to_one_onto_full_attention():
    linear, full = LinearAttention(32, 4, 8), FullAttention(32, 4, 8)
    full.load_state_dict(linear.state_dict())                          # strict: same names, same shapes
    assert sum(p.numel() for p in linear.parameters()) == 3 * 32 * 32 + 32 * 32 + 32


def test_transformer_with_linear_attention_learns_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = Transformer(32, 2, heads=4, dim_head=8, attention="linear_transformer", attention_kwargs=dict(chunk_size=4))
    x, target = torch.randn(4, 12, 32), torch.randn(4, 12, 32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = fixed_batch_losses(lambda: F.mse_loss(model(x, causal=True), target), opt, 30)
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("call, message", [
    (lambda a: a(torch.randn(2, 5, 16)), r"\(B, N, D=24\), got \(2, 5, 16\)"),
    (lambda a: a(torch.randn(2, 5, 24), mask=torch.ones(2, 4, dtype=torch.bool)), "mask"),
    (lambda a: a(torch.randn(2, 5, 24), mask=torch.ones(2, 5)), "bool"),
    (lambda a: a(torch.randn(2, 5, 24), context=torch.randn(2, 7, 24), causal=True), "as many keys as queries"),
    (lambda a: a.step(torch.randn(2, 5, 24)), r"\(B, D=24\)"),
])
def test_bad_input_raises_a_value_error_naming_the_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call(LinearAttention(24, heads=3, dim_head=8))


def test_undefined_options_raise_instead_of_being_ignored():
    with pytest.raises(ValueError, match="dropout"):
        LinearAttention(24, dropout=0.1)
    with pytest.raises(ValueError, match="feature_map"):
        LinearAttention(24, feature_map="relu")
    with pytest.raises(ValueError, match="chunk_size"):
        LinearAttention(24, chunk_size=0)


# ----------------------------------------------------------------------------- generation


def causal_model(attention: str) -> SequenceTransformer:
    torch.manual_seed(0)
    return SequenceTransformer(20, 20, dim=24, depth=2, heads=3, dim_head=8, max_len=40, attention=attention,
                               causal=True).double().eval()


@pytest.mark.parametrize("attention", ["linear_transformer", "full"])
def test_token_by_token_decoding_equals_the_parallel_forward(attention):
    model, ids = causal_model(attention), torch.randint(0, 20, (2, 30))
    with torch.no_grad():
        decoder = IncrementalDecoder(model, 2)
        logits = [decoder.prefill(ids[:, :6])] + [decoder.step(ids[:, t]) for t in range(6, 30)]
        torch.testing.assert_close(torch.stack(logits, 1), model(ids)[:, 5:])


def test_linear_state_stays_the_same_size_while_the_kv_cache_grows():
    sizes = {}
    for attention in ("linear_transformer", "full"):
        decoder = IncrementalDecoder(causal_model(attention), 1)
        with torch.no_grad():
            decoder.prefill(torch.zeros(1, 1, dtype=torch.long))
            before = decoder.state_bytes()
            for _ in range(9):
                decoder.step(torch.zeros(1, dtype=torch.long))
        sizes[attention] = (before, decoder.state_bytes())
    assert sizes["linear_transformer"][0] == sizes["linear_transformer"][1] == 2 * (8 * 8 + 8) * 3 * 8   # 2 layers
    assert sizes["full"][1] == 10 * sizes["full"][0]


def test_greedy_generation_equals_rerunning_the_model_on_the_growing_sequence():
    model, prompt = causal_model("linear_transformer"), torch.randint(0, 20, (2, 4))
    ids = prompt
    with torch.no_grad():
        for _ in range(8):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generate(model, prompt, 8), ids)


def test_generation_checks_its_model_and_length():
    with pytest.raises(ValueError, match="max_len"):
        generate(causal_model("linear_transformer"), torch.zeros(1, 30, dtype=torch.long), 20)
    with pytest.raises(ValueError, match="causal"):
        IncrementalDecoder(SequenceTransformer(20, 20, attention="linear_transformer"), 1)


# ----------------------------------------------------------------------------- the preset


def test_preset_parameter_count_equals_the_full_attention_twin():
    model = archzoo.create_model("linear_transformer_lm")
    n = sum(p.numel() for p in model.parameters())
    block = (4 * 64 * 64 + 64) + (64 * 256 + 256 + 256 * 64 + 64) + 2 * 2 * 64       # attention, MLP, 2 LayerNorms
    assert n == 129 * 64 + 1024 * 64 + 2 * block + 2 * 64 + (64 * 129 + 129) == 181_889  # + embeddings, norm, head
    twin = SequenceTransformer(129, 129, max_len=1024, attention="full", causal=True)
    twin.load_state_dict(model.state_dict())                         # linear attention adds no parameters


# ----------------------------------------------------------------------------- the public reference


@pytest.mark.reference
def test_causal_form_equals_linear_attention_transformer_with_its_kernel():
    # lucidrains' causal SelfAttention is Eq. 8-10 with phi_q = softmax over features (times e^-1/2) and
    # phi_k = exp; with our module given the same two maps and the same weights, outputs must agree.
    lat = pytest.importorskip("linear_attention_transformer.linear_attention_transformer")
    torch.manual_seed(0)
    ref = lat.SelfAttention(24, 3, causal=True, dim_head=8, blindspot_size=1).double().eval()
    ours = LinearAttention(24, 3, 8, eps=0.0, feature_map=(lambda q: q.softmax(-1), torch.exp)).double()
    ours.load_state_dict(ref.state_dict())
    x = randn(2, 16, 24) * 0.5
    torch.testing.assert_close(ours(x, causal=True), ref(x))


# ----------------------------------------------------------------------------- claims


def test_quick_equivalence_claim_passes(quick_claim):
    record = quick_claim("linear_transformer", "causal_equals_recurrent")   # run once (tests/test_claims_quick.py)
    assert record["passed"] is True and record["metrics"]["max_error"]["recurrent"] < 1e-12


def test_quick_generation_claim_measures_a_constant_state(quick_claim):
    state = quick_claim("linear_transformer", "constant_time_generation")["metrics"]["decoding_state"]
    assert state["linear"]["first_bytes"] == state["linear"]["last_bytes"]
    assert state["softmax_kv_cache"]["last_bytes"] == 96 * state["softmax_kv_cache"]["first_bytes"]
