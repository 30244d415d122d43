"""Reformer (Kitaev et al. 2020, arXiv:2001.04451): LSH attention, reversible layers, axial embeddings, presets."""

import copy

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import archzoo
from archzoo.core import Transformer
from archzoo.engine.bench import peak_memory
from archzoo.papers.reformer import (
    AxialPositionalEmbedding,
    LSHAttention,
    ReformerLM,
    ReversibleBlock,
    ReversibleFunction,
    SharedQKAttention,
    chunked,
    default_n_buckets,
    hash_vectors,
)
from archzoo.papers.reformer.lsh import MASK_VALUE, SELF_PENALTY, chunk_attention, sort_gather
from archzoo.papers.reformer.models import AttentionSublayer, FeedForwardSublayer

DIM, HEADS, DIM_HEAD = 16, 2, 8


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def heads_of(attn, x):
    qk = rearrange(attn.to_qk(x), "b n (h d) -> b h n d", h=attn.heads)
    v = rearrange(attn.to_v(x), "b n (h d) -> b h n d", h=attn.heads)
    return qk, v


def dense_shared_qk(attn, x, allowed):
    """Softmax over the keys `allowed` (B or 1, H or 1, N, N), own key - 1e5, keys k_j = q_j / ||q_j|| (Eq. 2-3)."""
    qk, v = heads_of(attn, x)
    dots = qk @ F.normalize(qk, dim=-1).transpose(-1, -2)
    n = x.shape[1]
    dots = (dots - SELF_PENALTY * torch.eye(n, dtype=dots.dtype)).masked_fill(~allowed, MASK_VALUE)
    return attn.to_out(rearrange(dots.softmax(-1) @ v, "b h n d -> b n (h d)"))


# ----------------------------------------------------------------------------- hashing


def test_hash_is_the_argmax_over_the_rotated_vector_and_its_negation():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 10, 4, dtype=torch.float64)                 # (B, H, N, d)
    rot = torch.randn(3, 4, 2, 3, dtype=torch.float64)                 # (H, d, rounds, b/2): b = 6
    buckets = hash_vectors(x, rot, 6)
    for h in range(3):
        for r in range(2):
            xr = x[:, h] @ rot[h, :, r]                                # (B, N, 3)
            torch.testing.assert_close(buckets[:, h, r], torch.cat([xr, -xr], -1).argmax(-1))
    torch.testing.assert_close(hash_vectors(3.7 * x, rot, 6), buckets)          # angular: scale-free
    torch.testing.assert_close(hash_vectors(-x, rot, 6), (buckets + 3) % 6)     # antipodes: the opposite bucket


def test_factorised_hash_combines_two_hashes_as_h1_plus_b1_h2():
    torch.manual_seed(0)
    x, rot = torch.randn(1, 2, 12, 4), torch.randn(2, 4, 1, 5)         # b1 = 4 (2 columns), b2 = 6 (3 columns)
    h = hash_vectors(x, rot, (4, 6))
    torch.testing.assert_close(h, hash_vectors(x, rot[..., :2], 4) + 4 * hash_vectors(x, rot[..., 2:], 6))
    assert int(h.max()) < 24


def test_default_buckets_follow_m_equals_2l_over_n_buckets_and_factorise_when_large():
    assert default_n_buckets(256, 32) == 16
    assert default_n_buckets(1024, 64) == 32
    assert default_n_buckets(16384, 64) == (16, 32)                    # 512 buckets from 24 rotation columns


# ----------------------------------------------------------------------------- LSH attention, exact cases


@pytest.mark.parametrize("causal", [False, True])
def test_lsh_with_one_chunk_and_no_bucket_mask_is_exact_shared_qk_attention(causal):
    torch.manual_seed(0)
    exact = SharedQKAttention(DIM, HEADS, DIM_HEAD).double()
    lsh = LSHAttention(DIM, HEADS, DIM_HEAD, chunk_length=24, n_hashes=1, attend_across_buckets=True).double()
    lsh.load_state_dict(exact.state_dict())                            # the same parameter names
    x = torch.randn(2, 24, DIM, dtype=torch.float64)
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[1, 17:] = False
    torch.testing.assert_close(lsh(x, causal=causal), exact(x, causal=causal))
    torch.testing.assert_close(lsh(x, causal=causal, mask=mask), exact(x, causal=causal, mask=mask))


@pytest.mark.parametrize("causal", [False, True])
def test_shared_qk_attention_is_eq_2_with_normalised_keys_and_self_masked(causal):
    torch.manual_seed(0)
    attn = SharedQKAttention(DIM, HEADS, DIM_HEAD).double()
    x = torch.randn(2, 9, DIM, dtype=torch.float64)
    allowed = torch.ones(9, 9, dtype=torch.bool).tril() if causal else torch.ones(9, 9, dtype=torch.bool)
    torch.testing.assert_close(attn(x, causal=causal), dense_shared_qk(attn, x, allowed))


@pytest.mark.parametrize("causal", [False, True])
def test_multi_round_lsh_is_softmax_over_the_union_of_the_rounds_buckets(causal):
    # Appendix A: with the log N_ij duplicate correction and exp(z_r - z) round weights, n rounds give exactly
    # softmax attention over P_i = union_r P_i^(r). One chunk per round makes every bucket fully visible.
    torch.manual_seed(0)
    attn = LSHAttention(DIM, HEADS, DIM_HEAD, chunk_length=16, n_hashes=3, n_buckets=4, hash_seed=3).double()
    x = torch.randn(2, 16, DIM, dtype=torch.float64)
    qk, _ = heads_of(attn, x)
    buckets = hash_vectors(qk, attn.random_rotations(4, torch.float64, "cpu"), 4)        # (B, H, R, N)
    union = (buckets[..., :, None] == buckets[..., None, :]).any(dim=2)                   # (B, H, N, N)
    if causal:
        union &= torch.ones(16, 16, dtype=torch.bool).tril()
    assert not union.all()                                             # the buckets do restrict the keys
    torch.testing.assert_close(attn(x, causal=causal), dense_shared_qk(attn, x, union))


@pytest.mark.parametrize("causal", [False, True])
def test_with_one_bucket_each_chunk_attends_to_itself_and_the_chunk_before(causal):
    # Eq. 5: sorted order is position order when every vector hashes alike; the first chunk looks back (circularly)
    # at the last one, which the causal mask then removes.
    torch.manual_seed(0)
    attn = LSHAttention(DIM, HEADS, DIM_HEAD, chunk_length=4, n_hashes=1).double()
    attn.hash = lambda qk, keep: (torch.zeros(qk.shape[0], qk.shape[1], 1, qk.shape[2], dtype=torch.long), 2)
    x = torch.randn(2, 16, DIM, dtype=torch.float64)
    chunk = torch.arange(16) // 4
    allowed = (chunk[:, None] == chunk[None, :]) | ((chunk[:, None] - 1) % 4 == chunk[None, :])
    if causal:
        allowed &= torch.ones(16, 16, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x, causal=causal), dense_shared_qk(attn, x, allowed))


def test_a_token_attends_to_itself_only_when_it_has_no_other_target():
    torch.manual_seed(0)
    attn = LSHAttention(DIM, HEADS, DIM_HEAD, chunk_length=8, n_hashes=2).double()
    x = torch.randn(1, 16, DIM, dtype=torch.float64)
    _, v = heads_of(attn, x)
    first = attn.to_out(rearrange(v[:, :, :1], "b h n d -> b n (h d)"))
    torch.testing.assert_close(attn(x, causal=True)[:, :1], first)    # position 0 sees only itself


def test_with_one_chunk_causal_lsh_ignores_future_tokens():
    torch.manual_seed(0)
    attn = LSHAttention(DIM, HEADS, DIM_HEAD, chunk_length=16, n_hashes=2, n_buckets=4, hash_seed=1).double()
    x = torch.randn(1, 16, DIM, dtype=torch.float64)
    y = x.clone()
    y[:, 10:] = torch.randn(1, 6, DIM, dtype=torch.float64)
    torch.testing.assert_close(attn(x, causal=True)[:, :10], attn(y, causal=True)[:, :10])


def test_padded_tokens_change_nothing_at_real_positions():
    torch.manual_seed(0)
    attn = LSHAttention(DIM, HEADS, DIM_HEAD, chunk_length=8, n_hashes=2, hash_seed=2).double()
    x = torch.randn(2, 32, DIM, dtype=torch.float64)
    mask = torch.ones(2, 32, dtype=torch.bool)
    mask[0, 20:] = False
    y = x.clone()
    y[0, 20:] = 100 * torch.randn(12, DIM, dtype=torch.float64)
    torch.testing.assert_close(attn(x, mask=mask)[mask], attn(y, mask=mask)[mask])


def test_lsh_output_approaches_exact_attention_with_more_hashes():
    # vectors in a few tight clusters: LSH finds the near neighbours, more rounds miss fewer of them
    torch.manual_seed(0)
    exact = SharedQKAttention(DIM, HEADS, DIM_HEAD).double()
    centres = 8 * torch.randn(8, DIM, dtype=torch.float64)
    x = (centres[torch.randint(0, 8, (2, 256))] + 0.05 * torch.randn(2, 256, DIM, dtype=torch.float64))
    target = exact(x)
    errors = []
    for rounds in (1, 8):
        lsh = LSHAttention(DIM, HEADS, DIM_HEAD, chunk_length=32, n_hashes=rounds).double()
        lsh.load_state_dict(exact.state_dict())
        torch.manual_seed(1)
        with torch.no_grad():
            errors.append(float((lsh(x) - target).norm() / target.norm()))
    assert errors[1] < errors[0] and errors[1] < 0.1


# ----------------------------------------------------------------------------- custom autograd functions


def test_gradcheck_of_the_sort_gather_and_its_inverse():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 6, 3, dtype=torch.float64, requires_grad=True)
    perm = torch.stack([torch.randperm(12) for _ in range(4)]).view(2, 2, 12)     # 2 rounds of 6 rows
    inverse = torch.argsort(perm, dim=-1)
    assert torch.autograd.gradcheck(lambda t: sort_gather(t, perm % 6, inverse), (x,))
    assert torch.equal(sort_gather(sort_gather(x, perm % 6, inverse), inverse, perm), x.repeat(1, 1, 2, 1))


def test_chunk_attention_equals_masked_softmax_attention_and_passes_gradcheck():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 3, w, 5, dtype=torch.float64, requires_grad=True) for w in (4, 8, 8))
    outside = torch.rand(1, 2, 3, 4, 8) < 0.3
    outside[..., 4:].diagonal(dim1=-2, dim2=-1).fill_(False)           # a query's own key is never outside
    log_dups = torch.randint(1, 4, (1, 2, 3, 4, 8)).double().log()
    out, lse = chunk_attention(q, k, v, outside, log_dups)
    logits = q @ k.transpose(-1, -2) - log_dups
    logits = torch.cat([logits[..., :4], logits[..., 4:] - SELF_PENALTY * torch.eye(4)], -1)   # own key: last 4
    logits = logits.masked_fill(outside, MASK_VALUE)
    torch.testing.assert_close(out, logits.softmax(-1) @ v)
    torch.testing.assert_close(lse, logits.logsumexp(-1, keepdim=True))
    assert torch.autograd.gradcheck(lambda *t: chunk_attention(*t, outside, log_dups), (q, k, v))


def test_gradcheck_of_lsh_attention_with_fixed_hashing():
    torch.manual_seed(0)
    attn = LSHAttention(8, 2, 4, chunk_length=4, n_hashes=2, n_buckets=4, hash_seed=0).double()
    x = torch.randn(1, 16, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: attn(t, causal=True), (x,))


# ----------------------------------------------------------------------------- reversible layers


def small_lm(reversible=True, **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=40, dim=DIM, depth=3, heads=HEADS, dim_head=DIM_HEAD, ff_dim=32, max_len=64,
               attention_kwargs=dict(chunk_length=8, n_hashes=2), reversible=reversible)
    return ReformerLM(**{**cfg, **kw}).double()


def test_reversible_gradients_equal_the_standard_networks_with_random_hashing_and_dropout():
    rev = small_lm(dropout=0.2, ff_chunks=4)
    std = copy.deepcopy(rev)
    std.layers.reversible = False
    ids = torch.randint(0, 40, (2, 64))
    outputs = []
    for model in (rev, std):
        torch.manual_seed(7)                                           # same rotations and dropout masks
        out = model(ids)
        F.cross_entropy(out[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    for (name, a), b in zip(rev.named_parameters(), std.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-10, msg=name)


def test_a_reversible_block_is_inverted_by_x2_eq_y2_minus_g_y1_and_x1_eq_y1_minus_f_x2():
    torch.manual_seed(0)
    block = ReversibleBlock(AttentionSublayer(DIM, SharedQKAttention(DIM, HEADS, DIM_HEAD)),
                            FeedForwardSublayer(DIM, 32), chunks=2).double()
    x1, x2 = torch.randn(2, 2, 12, DIM, dtype=torch.float64)
    y1, y2 = block(x1, x2, causal=True)
    torch.testing.assert_close(y1, x1 + block.f(x2, causal=True))
    x2_back = y2 - block.g(y1)
    torch.testing.assert_close(x2_back, x2)
    torch.testing.assert_close(y1 - block.f(x2_back, causal=True), x1)


def test_gradcheck_of_the_reversible_function_for_input_and_parameters():
    torch.manual_seed(0)
    blocks = [ReversibleBlock(AttentionSublayer(4, SharedQKAttention(4, 2, 2)), FeedForwardSublayer(4, 6),
                              chunks=2).double() for _ in range(2)]
    params = [p for b in blocks for p in b.parameters()]
    x = torch.randn(1, 4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, *ps: ReversibleFunction.apply(t, blocks, {"causal": True}, *ps),
                                    (x, *params))


def test_reversible_stack_memory_does_not_grow_with_depth_and_the_standard_one_does():
    ids = torch.randint(0, 40, (2, 32))
    peak = {(r, d): peak_memory(small_lm(reversible=r, depth=d).float(), (ids,)) for r in (True, False)
            for d in (2, 6)}
    assert peak[True, 6] < 1.15 * peak[True, 2]
    assert peak[False, 6] > 2 * peak[False, 2]


def test_chunked_feed_forward_equals_the_unchunked_one():
    torch.manual_seed(0)
    ff = FeedForwardSublayer(DIM, 32).double()
    x = torch.randn(2, 20, DIM, dtype=torch.float64)
    torch.testing.assert_close(chunked(ff, x, 4), ff(x))


# ----------------------------------------------------------------------------- axial positions and models


def test_axial_embedding_concatenates_one_row_of_each_axis():
    torch.manual_seed(0)
    emb = AxialPositionalEmbedding((4, 8), (6, 10))
    assert n_params(emb) == 4 * 6 + 8 * 10
    table = emb.table(32)
    for p in (0, 9, 31):
        torch.testing.assert_close(table[p], torch.cat([emb.weight_1[p // 8], emb.weight_2[p % 8]]))
    x = torch.zeros(2, 20, 16)
    torch.testing.assert_close(emb(x), table[:20].expand(2, 20, 16))


def test_presets_have_their_parameter_counts():
    # reformer_enwik8 = 12 x (attention 3 x 1024^2 + 2 LayerNorms + FF 2 x 1024 x 4096 + biases) + embeddings + head
    layer = 3 * 1024 * 1024 + 2 * 2 * 1024 + (1024 * 4096 + 4096) + (4096 * 1024 + 1024)
    embeddings = 256 * 1024 + 128 * 256 + 512 * 768
    head = 2 * 2048 + 2048 * 256 + 256
    with torch.device("meta"):
        assert n_params(archzoo.create_model("reformer_enwik8")) == 12 * layer + embeddings + head == 139_739_392
    assert n_params(archzoo.create_model("reformer_tiny")) == 142_976


def test_transformer_takes_the_reformer_attention_by_name():
    torch.manual_seed(0)
    model = Transformer(DIM, 2, HEADS, DIM_HEAD, attention="reformer",
                        attention_kwargs=dict(chunk_length=8, n_hashes=2))
    assert isinstance(model.blocks[0].attn, LSHAttention)
    assert model(torch.randn(2, 32, DIM), causal=True).shape == (2, 32, DIM)


def test_reformer_lm_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    model = small_lm().float()
    ids = torch.randint(0, 40, (4, 64))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    def loss():
        return F.cross_entropy(model(ids)[:, :-1].flatten(0, 1), ids[:, 1:].flatten())

    losses = fixed_batch_losses(loss, opt, 30)
    assert losses[-1] < 0.8 * losses[0]


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_value_errors_naming_the_shapes():
    attn = LSHAttention(DIM, HEADS, DIM_HEAD, chunk_length=8)
    with pytest.raises(ValueError, match=r"\(B, N, D=16\).*\(2, 16, 8\)"):
        attn(torch.randn(2, 16, 8))
    with pytest.raises(ValueError, match="multiple of chunk_length=8"):
        attn(torch.randn(2, 12, DIM))
    with pytest.raises(ValueError, match="cross-attention"):
        attn(torch.randn(2, 16, DIM), context=torch.randn(2, 8, DIM))
    with pytest.raises(ValueError, match="mask"):
        attn(torch.randn(2, 16, DIM), mask=torch.ones(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="cross-attention"):
        SharedQKAttention(DIM, HEADS, DIM_HEAD)(torch.randn(2, 16, DIM), context=torch.randn(2, 8, DIM))
    with pytest.raises(ValueError, match="even"):
        LSHAttention(DIM, n_buckets=5)
    lm = small_lm().float()
    with pytest.raises(ValueError, match="int"):
        lm(torch.randn(2, 16))
    with pytest.raises(ValueError, match="max_len=64"):
        lm(torch.randint(0, 40, (1, 72)))
    with pytest.raises(ValueError, match="exceeds the axial grid"):
        AxialPositionalEmbedding((2, 4), (8, 8))(torch.randn(1, 9, 16))


# ----------------------------------------------------------------------------- references (transformers)


@pytest.mark.reference
@pytest.mark.parametrize("causal", [False, True])
def test_lsh_attention_equals_transformers_lsh_self_attention_with_the_same_rotations(causal):
    pytest.importorskip("transformers")
    from transformers import ReformerConfig
    from transformers.models.reformer.modeling_reformer import LSHSelfAttention

    config = ReformerConfig(hidden_size=32, num_attention_heads=2, attention_head_size=16, lsh_attn_chunk_length=8,
                            num_hashes=3, num_buckets=8, lsh_num_chunks_before=1, lsh_num_chunks_after=0,
                            hash_seed=7, is_decoder=causal, lsh_attention_probs_dropout_prob=0.0,
                            max_position_embeddings=64)
    ref = LSHSelfAttention(config).double().eval()
    # transformers normalises keys by x / sqrt(mean(x^2) + 1e-6) / sqrt(d); without the epsilon that is x / ||x||
    ref._len_norm = lambda x, epsilon=0.0: x * torch.rsqrt((x ** 2).mean(-1, keepdim=True))
    ours = LSHAttention(32, 2, 16, chunk_length=8, n_hashes=3, n_buckets=8, attend_across_buckets=True,
                        hash_seed=7).double().eval()
    ours.to_qk.weight.data.copy_(ref.query_key.weight)
    ours.to_v.weight.data.copy_(ref.value.weight)
    torch.nn.init.eye_(ours.to_out.weight)
    torch.manual_seed(0)
    x = torch.randn(2, 64, 32, dtype=torch.float64)
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 40:] = False
    torch.testing.assert_close(ours(x, causal=causal), ref(x).hidden_states)
    torch.testing.assert_close(ours(x, causal=causal, mask=mask)[mask],
                               ref(x, attention_mask=mask.long()).hidden_states[mask])     # real tokens


@pytest.mark.reference
def test_reformer_lm_has_transformers_parameter_count_and_axial_embeddings():
    pytest.importorskip("transformers")
    from transformers import ReformerConfig, ReformerModelWithLMHead

    config = ReformerConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, attn_layers=["lsh", "lsh"],
                            num_attention_heads=4, attention_head_size=16, feed_forward_size=256,
                            axial_pos_embds=True, axial_pos_shape=(32, 32), axial_pos_embds_dim=(32, 32),
                            lsh_attn_chunk_length=32, num_hashes=2, is_decoder=True, max_position_embeddings=1024)
    ref = ReformerModelWithLMHead(config)
    ours = archzoo.create_model("reformer_tiny")
    # transformers keeps an unused `lm_head.bias` beside `lm_head.decoder.bias`
    assert n_params(ours) == n_params(ref) - ref.lm_head.bias.numel() == 142_976
    axial = ref.reformer.embeddings.position_embeddings.eval()
    ours.pos.weight_1.data.copy_(axial.weights[0].view(32, 32))
    ours.pos.weight_2.data.copy_(axial.weights[1].view(32, 32))
    torch.testing.assert_close(ours.pos.table(1000), axial(torch.arange(1000)[None])[0])
