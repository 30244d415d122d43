"""Terraformer (Jaszczur et al. 2021, arXiv:2111.12763): sparse feed-forward, sparse QKV, the reversible LM with
cached decoding, the presets and the claim."""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import archzoo
from archzoo.core import FullAttention
from archzoo.papers.reformer import ReformerLM, ReversibleBlock
from archzoo.papers.reformer.models import AttentionSublayer, FeedForwardSublayer
from archzoo.papers.terraformer import (
    ModuleConv,
    MultiplicativeDense,
    SparseFeedForward,
    SparseQKVAttention,
    TerraformerLM,
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sparse_ff(block_size=4, ff_dim=24, dim=6, **kw) -> SparseFeedForward:
    torch.manual_seed(0)
    return SparseFeedForward(dim, ff_dim, block_size, **kw).double()


def chosen_by_hand(ff: SparseFeedForward, x: torch.Tensor) -> torch.Tensor:
    """Controller(x) = argmax(Reshape(x C_1 C_2, (-1, N))) (Sec. 3.1), element n of block k being unit n K + k."""
    logits = (x @ ff.c1.weight.T @ ff.c2.weight.T + ff.c2.bias).unflatten(-1, (ff.block_size, ff.n_blocks))
    return logits.argmax(-2) * ff.n_blocks + torch.arange(ff.n_blocks)                 # (..., K)


def dense_on_units(ff: SparseFeedForward, x: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """The dense FFN max(0, x W_1 + b_1) W_2 + b_2 with every unit outside `units` (T, K) removed, token by token."""
    out = []
    for token, u in zip(x.reshape(-1, ff.dim), units.reshape(-1, ff.n_blocks)):
        out.append(F.relu(ff.w1[u] @ token + ff.b1[u]) @ ff.w2[u] + ff.b2)
    return torch.stack(out).view_as(x)


# ----------------------------------------------------------------------------- sparse feed-forward (Sec. 3.1)


def test_sparse_ffn_at_inference_is_the_dense_ffn_restricted_to_the_chosen_units():
    ff = sparse_ff().eval()
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(ff(x), dense_on_units(ff, x, chosen_by_hand(ff, x)))
    torch.testing.assert_close(ff.chosen_units(x), chosen_by_hand(ff, x))


def test_the_decode_path_reading_only_the_chosen_units_equals_the_forward():
    ff = sparse_ff().eval()
    x = torch.randn(4, 7, 6, dtype=torch.float64)
    torch.testing.assert_close(ff.decode(x), ff(x))


def test_the_controller_keeps_exactly_one_unit_per_block():
    ff = sparse_ff().eval()
    mask = rearrange(ff.selection(torch.randn(50, 6, dtype=torch.float64)), "t n k -> t k n")
    assert torch.equal(mask.sum(-1), torch.ones(50, ff.n_blocks, dtype=mask.dtype))
    assert set(mask.unique().tolist()) == {0.0, 1.0}


def test_straight_through_selection_is_one_hot_forward_and_the_softmax_gradient_backward():
    ff = sparse_ff(quant_prob=1.0).train()
    x = torch.randn(9, 6, dtype=torch.float64)
    logits = ff.controller_logits(x).detach().requires_grad_(True)
    ff.controller_logits = lambda _: logits                             # the selection of these logits
    mask = ff.selection(x)                                              # (T, N, K)
    torch.testing.assert_close(mask.detach(), F.one_hot(mask.argmax(-2), 4).transpose(-1, -2).double())
    g = torch.randn_like(mask)
    (mask * g).sum().backward()
    p = logits.detach().softmax(-2)
    torch.testing.assert_close(logits.grad, p * (g - (p * g).sum(-2, keepdim=True)))   # d softmax / d l


def test_the_training_draw_samples_the_softmax_at_the_temperature():
    torch.manual_seed(0)
    ff = SparseFeedForward(2, 4, block_size=4, temperature=0.5, quant_prob=1.0).double()
    logits = torch.tensor([0.0, 0.3, -0.2, 0.5], dtype=torch.float64).view(1, 4, 1).expand(40000, 4, 1)
    ff.controller_logits = lambda _: logits
    drawn = ff.selection(torch.zeros(40000, 2, dtype=torch.float64)).argmax(-2).flatten()
    frequency = torch.bincount(drawn, minlength=4).double() / 40000
    torch.testing.assert_close(frequency, (logits[0, :, 0] / 0.5).softmax(0), atol=0.01, rtol=0)


def test_without_quantisation_training_uses_the_soft_mask():
    ff = sparse_ff(quant_prob=0.0).train()
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(ff.selection(x), ff.controller_logits(x).softmax(-2))


def test_sparse_ffn_arguments_are_checked():
    with pytest.raises(ValueError, match=r"ff_dim \(30\) must be a positive multiple of block_size \(4\)"):
        SparseFeedForward(6, 30, 4)
    with pytest.raises(ValueError, match="expected shape"):
        sparse_ff()(torch.randn(2, 5, dtype=torch.float64))


# ----------------------------------------------------------------------------- sparse QKV (Sec. 3.2)


def test_the_multiplicative_layer_is_the_dense_layer_of_weight_d_times_e():
    torch.manual_seed(0)
    mult = MultiplicativeDense(6, 3, 4).double()
    torch.nn.init.normal_(mult.bias)
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    dense = x @ mult.dense_weight() + mult.bias.flatten()
    torch.testing.assert_close(rearrange(mult(x), "b n s m -> b n (s m)"), dense)
    assert n_params(mult) == 6 * (3 + 4) + 3 * 4                      # d (S + M) + bias, not d * S * M


def test_the_multiplicative_layer_can_represent_any_permutation():
    d, s, m = 6, 2, 3
    perm = torch.randperm(d, generator=torch.Generator().manual_seed(0))   # input k goes to output perm[k] = (s, m)
    mult = MultiplicativeDense(d, s, m).double()
    with torch.no_grad():
        mult.D.copy_(F.one_hot(perm // m, s))
        mult.E.copy_(F.one_hot(perm % m, m))
        mult.bias.zero_()
    x = torch.randn(4, d, dtype=torch.float64)
    expected = torch.empty_like(x)
    expected[:, perm] = x
    torch.testing.assert_close(rearrange(mult(x), "b s m -> b (s m)"), expected)


def test_the_module_convolution_is_causal_over_tokens_and_local_over_modules():
    torch.manual_seed(0)
    conv = ModuleConv(3, length_kernel=3, module_kernel=3).double()
    u = torch.randn(2, 5, 4, 3, dtype=torch.float64)                   # (B, N, S, M)
    w, b = conv.conv.weight, conv.conv.bias                            # (M_out, M_in, F, F)
    expected = b.expand(2, 5, 4, 3).clone()
    for i in range(5):
        for s in range(4):
            for f in range(3):
                for j in range(3):
                    t, s_in = i - 2 + f, s - 1 + j                     # tokens i-2..i, modules s-1..s+1
                    if t >= 0 and 0 <= s_in < 4:
                        expected[:, i, s] += u[:, t, s_in] @ w[:, :, f, j].T
    torch.testing.assert_close(conv(u), expected)


def test_sparse_qkv_with_identity_convolutions_is_attention_with_the_dense_expansion():
    torch.manual_seed(0)
    attn = SparseQKVAttention(8, heads=2, dim_head=6, modules=4).double().eval()   # S = 4 modules of M = 3
    full = FullAttention(8, heads=2, dim_head=6, qkv_bias=True).double().eval()
    with torch.no_grad():
        for conv in (attn.conv_q, attn.conv_k, attn.conv_v):
            w = torch.zeros_like(conv.conv.weight)
            w[:, :, -1, w.shape[-1] // 2] = torch.eye(3)               # the current token, its own module
            conv.conv.weight.copy_(w)
            conv.conv.bias.zero_()
        torch.nn.init.normal_(attn.mult.bias)
        for proj in (full.to_q, full.to_k, full.to_v):
            proj.weight.copy_(attn.mult.dense_weight().T)
            proj.bias.copy_(attn.mult.bias.flatten())
        full.to_out.load_state_dict(attn.to_out.state_dict())
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    for causal in (False, True):
        torch.testing.assert_close(attn(x, causal=causal), full(x, causal=causal))


def test_sparse_qkv_gives_one_module_group_per_head_and_fewer_parameters_than_dense():
    attn = SparseQKVAttention(64, heads=4, dim_head=16)                 # S = 4 modules of M = 16
    q, k, v = attn.qkv(attn.mult(torch.randn(2, 5, 64)))
    assert q.shape == k.shape == v.shape == (2, 4, 5, 16)
    m = 16
    assert n_params(attn) == 64 * (4 + m) + 4 * m + 2 * (9 * m * m + m) + (3 * m * m + m) + 64 * 64 + 64
    assert n_params(attn) < n_params(FullAttention(64, heads=4, dim_head=16))
    with pytest.raises(ValueError, match="context=None"):
        attn(torch.randn(1, 3, 64), context=torch.randn(1, 3, 64))


# ----------------------------------------------------------------------------- the reversible LM and decoding


def tiny(attention="terraformer_sparse_qkv", **kw) -> TerraformerLM:
    torch.manual_seed(0)
    cfg = dict(dim=16, depth=2, heads=2, dim_head=8, ff_dim=32, block_size=4, max_len=32, attention=attention)
    return TerraformerLM(50, **{**cfg, **kw}).double()


@pytest.mark.parametrize("attention", ["terraformer_sparse_qkv", "full", "reformer_shared_qk"])
def test_cached_decoding_equals_the_full_forward_on_the_same_selection(attention):
    model = tiny(attention).eval()
    ids = torch.randint(50, (2, 12), generator=torch.Generator().manual_seed(1))
    full = model(ids)
    state = model.init_decoding()
    steps = torch.stack([model.decode_step(ids[:, i], state) for i in range(12)], dim=1)
    torch.testing.assert_close(steps, full)


def test_an_lsh_model_decodes_as_its_exact_shared_qk_attention():
    """Decoding uses the attention LSH approximates (Reformer Table 2): a model with LSH attention decodes as the
    same weights with exact shared-QK attention compute."""
    lsh = tiny("reformer", attention_kwargs=dict(chunk_length=4, n_hashes=2)).eval()
    exact = tiny("reformer_shared_qk").eval()
    exact.load_state_dict(lsh.state_dict())
    ids = torch.randint(50, (1, 8), generator=torch.Generator().manual_seed(2))
    state = lsh.init_decoding()
    steps = torch.stack([lsh.decode_step(ids[:, i], state) for i in range(8)], dim=1)
    torch.testing.assert_close(steps, exact(ids))


def test_generate_is_greedy_decoding_and_decoding_needs_eval_mode():
    model = tiny().eval()
    out = model.generate(torch.tensor([[3, 4]]), steps=5)
    assert out.shape == (1, 7) and out[0, :2].tolist() == [3, 4]
    torch.testing.assert_close(model(out[:, :-1])[:, 1:].argmax(-1), out[:, 2:], rtol=0, atol=0)
    with pytest.raises(ValueError, match="eval"):
        model.train().decode_step(torch.tensor([1]), model.init_decoding())


def test_a_reversible_sparse_layer_rebuilds_its_inputs_from_its_outputs():
    """Training-mode draws (the Gumbel selection, the soft/quantised choice) are replayed in the backward pass."""
    torch.manual_seed(0)
    block = ReversibleBlock(AttentionSublayer(16, SparseQKVAttention(16, heads=2, dim_head=8)),
                            FeedForwardSublayer(16, 32, ff=SparseFeedForward(16, 32, 4, quant_prob=0.5))).double()
    x1, x2 = torch.randn(2, 2, 6, 16, dtype=torch.float64)
    y1, y2, f_state, g_state = block.forward_recorded(x1, x2, causal=True)
    dy = torch.randn_like(y1)
    r1, r2, _, _ = block.backward_pass(y1, y2, dy, dy, f_state, g_state, {}, causal=True)
    torch.testing.assert_close((r1, r2), (x1, x2))


@pytest.mark.parametrize("attention", ["terraformer_sparse_qkv", "reformer"])
def test_reversible_training_gives_the_gradients_of_the_ordinary_network(attention):
    kw = dict(attention_kwargs=dict(chunk_length=4, n_hashes=2)) if attention == "reformer" else {}
    ids = torch.randint(50, (2, 8), generator=torch.Generator().manual_seed(3))
    grads = []
    for reversible in (True, False):
        model = tiny(attention, reversible=reversible, **kw).train()
        torch.manual_seed(5)
        model(ids).logsumexp(-1).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_reformer_lm_takes_the_sparse_ffn_in_place_of_its_mlp():
    dense = ReformerLM(50, dim=16, depth=1, heads=2, dim_head=8, ff_dim=32, max_len=16)
    sparse = ReformerLM(50, dim=16, depth=1, heads=2, dim_head=8, ff_dim=32, max_len=16,
                        feedforward=lambda d, d_ff: SparseFeedForward(d, d_ff, 4))
    assert isinstance(sparse.layers.blocks[0].g[1], SparseFeedForward)
    assert type(dense.layers.blocks[0].g[1]).__name__ == "MLP"


def test_the_sparse_lm_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    model = tiny().float().train()
    ids = torch.randint(50, (4, 16), generator=torch.Generator().manual_seed(4))
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    losses = fixed_batch_losses(lambda: F.cross_entropy(model(ids[:, :-1]).transpose(1, 2), ids[:, 1:]), opt, 40)
    assert losses[-1] < 0.5 * losses[0]


# ----------------------------------------------------------------------------- presets and the claim


def sparse_layer_params(d, d_ff, n, heads, dim_head, modules):
    """One Terraformer layer: sparse QKV attention (Sec. 3.2) + sparse FFN (Sec. 3.1) + their two LayerNorms."""
    inner, lowrank = heads * dim_head, max(1, d // n)
    m = inner // modules
    attention = d * (modules + m) + modules * m + 2 * (9 * m * m + m) + (3 * m * m + m) + inner * d + d
    ff = 2 * d_ff * d + d_ff + d + d * lowrank + lowrank * d_ff + d_ff
    return attention + ff + 4 * d


def test_preset_parameter_counts():
    """Counted from the layer formula above at the presets' sizes (the paper gives no count for these configs)."""
    tiny_count = 256 * 64 + 1024 * 64 + 2 * sparse_layer_params(64, 512, 32, 4, 16, 4) + 4 * 64 + 128 * 256 + 256
    medium_count = (32000 * 1024 + (128 + 256) * 512 + 24 * sparse_layer_params(1024, 6144, 64, 16, 64, 16)
                    + 4 * 1024 + 2048 * 32000 + 32000)
    assert (tiny_count, medium_count) == (273_120, 432_946_944)
    assert n_params(archzoo.create_model("terraformer_tiny")) == tiny_count
    with torch.device("meta"):
        assert n_params(archzoo.create_model("terraformer_c4_medium")) == medium_count


def test_quick_claim_measures_decoding_and_the_loss_gaps(quick_claim):
    metrics = quick_claim("terraformer", "sparse_decoding")["metrics"]
    assert set(metrics["ms_per_token"]) == {"sparse", "dense"}
    assert all(ms > 0 for kind in metrics["ms_per_token"].values() for ms in kind.values())
    mean = metrics["mean_final_val_loss"]
    assert set(mean) == {"dense", "sparse_ff", "sparse"}
    for kind in ("sparse_ff", "sparse"):
        assert metrics["loss_gap"][kind] == pytest.approx((mean[kind] - mean["dense"]) / mean["dense"])
