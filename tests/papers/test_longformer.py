"""Longformer (Beltagy et al. 2020, arXiv:2004.05150): the banded attention equals full attention under the
equivalent mask, global projections, memory linear in n, presets, Hugging Face reference, the claims."""

import math

import pytest
import torch
from einops import rearrange

import archzoo
from archzoo.core import FullAttention, SequenceTransformer, Transformer
from archzoo.engine.bench import peak_memory
from archzoo.engine.bench.attention import attention_bench_specs, build_attention
from archzoo.papers.longformer import LongformerAttention, LongformerEncoder, attention_pattern, global_tokens

DIM, HEADS, DH = 16, 2, 8


def lengths_mask(lengths, n):
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]          # (B, n), True = real token


def tie_global_projections(attn):
    """Q_g, K_g, V_g := Q_s, K_s, V_s: then Longformer attention is full attention under its pattern."""
    for g, s in ((attn.to_q_global, attn.to_q), (attn.to_k_global, attn.to_k), (attn.to_v_global, attn.to_v)):
        g.load_state_dict(s.state_dict())


def masked_full_attention(attn, x, allowed):
    """softmax(Q K^T / sqrt(d) + mask) V W_O written out in float64, `allowed` (B or 1, H or 1, N, N);
    a query with no allowed key outputs 0 (as `FullAttention`)."""
    q, k, v = (rearrange(f(x), "b n (h e) -> b h n e", h=attn.heads) for f in (attn.to_q, attn.to_k, attn.to_v))
    scores = (q @ k.transpose(-1, -2) / math.sqrt(attn.dim_head)).masked_fill(~allowed, float("-inf"))
    out = attn.to_out(rearrange(scores.softmax(-1).nan_to_num(0.0) @ v, "b h n e -> b n (h e)"))
    empty = ~allowed.any(-1).all(1)                                              # (B, N) no key in any head
    return out.masked_fill(empty[..., None], 0.0)


def longformer_pattern(attn, n, mask=None, causal=False, global_mask=None):
    b = 1 if mask is None else mask.shape[0]
    keep = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    g = (attn.default_global_mask(b, n) if global_mask is None else global_mask) & keep
    return torch.stack([attention_pattern(n, attn.window, d, g, keep, causal) for d in attn.dilation], 1)


CASES = {                                  # n, window, dilation, global tokens, padded, causal
    "window": (37, 6, 1, (), False, False),
    "window+global": (37, 6, 1, (0,), False, False),
    "window+global, padded": (40, 8, 1, (0, 9, -1), True, False),
    "causal window": (33, 6, 1, (), False, True),
    "causal window+global, padded": (41, 4, 1, (0, 3), True, True),
    "dilated": (50, 4, 3, (), False, False),
    "dilated+global, padded": (50, 4, 2, (0, -1), True, False),
    "per-head dilation, causal": (45, 6, (1, 2), (1,), True, True),
    "window wider than n": (12, 40, 1, (), True, False),
}


@pytest.mark.parametrize("case", CASES)
def test_banded_attention_equals_full_attention_under_the_equivalent_mask(case):
    n, window, dilation, glob, padded, causal = CASES[case]
    torch.manual_seed(0)
    attn = LongformerAttention(DIM, HEADS, DH, window=window, dilation=dilation, global_tokens=glob,
                               qkv_bias=True).double()
    tie_global_projections(attn)
    x = torch.randn(3, n, DIM, dtype=torch.float64)
    mask = lengths_mask([n, n - 5, n - 11], n) if padded else None
    expected = masked_full_attention(attn, x, longformer_pattern(attn, n, mask, causal))
    torch.testing.assert_close(attn(x, mask=mask, causal=causal), expected)


def test_gradients_equal_those_of_the_masked_full_attention():
    torch.manual_seed(0)
    attn = LongformerAttention(DIM, HEADS, DH, window=4, dilation=(1, 2), global_tokens=(0, 7)).double()
    tie_global_projections(attn)
    x = torch.randn(2, 30, DIM, dtype=torch.float64, requires_grad=True)
    mask = lengths_mask([30, 22], 30)
    grads = []
    for f in (lambda: attn(x, mask=mask), lambda: masked_full_attention(attn, x, longformer_pattern(attn, 30, mask))):
        attn.zero_grad()
        x.grad = None
        (f() * torch.linspace(-1, 1, DIM, dtype=torch.float64)).sum().backward()
        grads.append([x.grad.clone(), attn.to_out.weight.grad.clone()] + [   # tied: Q_s and Q_g together, ...
            s.weight.grad + (g.weight.grad if g.weight.grad is not None else 0)
            for s, g in ((attn.to_q, attn.to_q_global), (attn.to_k, attn.to_k_global), (attn.to_v, attn.to_v_global))])
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("causal", [False, True])
def test_a_window_covering_the_sequence_without_global_tokens_is_full_attention(causal):
    torch.manual_seed(0)
    attn = LongformerAttention(DIM, HEADS, DH, window=64, global_tokens=()).double()
    full = FullAttention(DIM, HEADS, DH).double()
    full.load_state_dict({k: v for k, v in attn.state_dict().items() if "global" not in k})
    x, mask = torch.randn(2, 20, DIM, dtype=torch.float64), lengths_mask([20, 13], 20)
    torch.testing.assert_close(attn(x, mask=mask, causal=causal), full(x, mask=mask, causal=causal))


def test_global_rows_use_the_global_projections_and_other_rows_do_not():
    torch.manual_seed(0)
    attn = LongformerAttention(DIM, HEADS, DH, window=4, global_tokens=(2,)).double()
    x = torch.randn(2, 24, DIM, dtype=torch.float64)
    y = attn(x)
    # the global row: softmax(Q_g x_2 . K_g x_j / sqrt(d)) V_g x_j over every j
    q, k, v = (rearrange(f(x), "b n (h e) -> b h n e", h=HEADS)
               for f in (attn.to_q_global, attn.to_k_global, attn.to_v_global))
    row = (q[:, :, 2:3] @ k.transpose(-1, -2) / math.sqrt(DH)).softmax(-1) @ v                # (B, H, 1, d)
    torch.testing.assert_close(y[:, 2], attn.to_out(rearrange(row, "b h 1 e -> b (h e)")))
    # the other rows see the global token through Q_s, K_s, V_s: re-drawing Q_g, K_g, V_g leaves them unchanged
    for lin in (attn.to_q_global, attn.to_k_global, attn.to_v_global):
        torch.nn.init.normal_(lin.weight)
    y2 = attn(x)
    others = torch.arange(24) != 2
    torch.testing.assert_close(y2[:, others], y[:, others])
    assert not torch.allclose(y2[:, 2], y[:, 2])


def test_per_call_global_mask_overrides_the_default_global_tokens():
    torch.manual_seed(0)
    attn = LongformerAttention(DIM, HEADS, DH, window=4, global_tokens=(0,))
    x = torch.randn(2, 20, DIM)
    g = torch.zeros(2, 20, dtype=torch.bool)
    g[0, [3, 11]], g[1, 19] = True, True                          # a different number of global tokens per sample
    expected = torch.cat([LongformerAttention.forward(attn, x[i:i + 1], global_mask=g[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(attn(x, global_mask=g), expected)
    attn.global_tokens = (3, 11)
    torch.testing.assert_close(attn(x[:1]), expected[:1])
    assert not torch.allclose(attn(x, global_mask=torch.zeros_like(g)), expected)


def test_a_query_with_no_key_outputs_zero_like_full_attention():
    torch.manual_seed(0)
    attn = LongformerAttention(DIM, HEADS, DH, window=2, global_tokens=())
    x = torch.randn(1, 12, DIM, requires_grad=True)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 4:9] = False                                       # queries 5..7 have only padding in their window
    y = attn(x, mask=mask)
    assert torch.equal(y[0, 5:8], torch.zeros(3, DIM)) and y[0, [4, 8]].abs().sum() > 0
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_memory_grows_linearly_not_quadratically():
    attn = LongformerAttention(16, 2, 8, window=16, global_tokens=(0,))
    peaks = [peak_memory(attn, (torch.randn(1, n, 16, requires_grad=True),)) for n in (512, 1024, 2048)]
    assert 1.8 < peaks[1] / peaks[0] < 2.2 and 1.8 < peaks[2] / peaks[1] < 2.2
    assert peaks[2] < 2048 * 2048 * 4 / 4                     # far below one float32 n x n matrix


@pytest.mark.parametrize("call, message", [
    (lambda a, x: a(x[:, :, :8]), "expected shape"),
    (lambda a, x: a(x, context=x), "cross-attention"),
    (lambda a, x: a(x, mask=torch.ones(2, 9, dtype=torch.bool)), "mask"),
    (lambda a, x: a(x, mask=torch.ones(2, 10)), "bool"),
    (lambda a, x: a(x, global_mask=torch.ones(2, 10, 1, dtype=torch.bool)), "global_mask"),
])
def test_bad_input_raises_a_value_error_naming_it(call, message):
    attn, x = LongformerAttention(DIM, HEADS, DH, window=4), torch.randn(2, 10, DIM)
    with pytest.raises(ValueError, match=message):
        call(attn, x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(window=5), "even"), (dict(window=0), "even"), (dict(dilation=(1, 2, 3)), "one per head"),
    (dict(dilation=0), "dilation"),
])
def test_bad_configuration_raises_a_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LongformerAttention(DIM, HEADS, DH, **kwargs)


def test_a_global_position_outside_the_sequence_raises():
    with pytest.raises(ValueError, match="outside a sequence of length 6"):
        LongformerAttention(DIM, HEADS, DH, window=4, global_tokens=(8,))(torch.randn(1, 6, DIM))


def test_plugs_into_the_transformer_and_a_sequence_model_learns_a_fixed_batch(fixed_batch_losses):
    block = Transformer(DIM, 2, HEADS, DH, attention="longformer", attention_kwargs=dict(window=4))
    assert isinstance(block.blocks[0].attn, LongformerAttention) and block(torch.randn(2, 9, DIM)).shape == (2, 9, DIM)
    torch.manual_seed(0)
    model = SequenceTransformer(12, 5, dim=32, depth=1, max_len=40, attention="longformer",
                                attention_kwargs=dict(window=8, global_tokens=(-1,)), per_token=False)
    ids, y = torch.randint(12, (16, 40)), torch.randint(5, (16,))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = fixed_batch_losses(lambda: torch.nn.functional.cross_entropy(model(ids), y), opt, 30)
    assert losses[-1] < 0.5 * losses[0]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, count", [("longformer_base", 148_657_152), ("longformer_large", 434_597_888)])
def test_presets_have_roberta_sizes_with_4096_positions(name, count):
    with torch.device("meta"):
        model = archzoo.create_model(name)
    assert n_params(model) == count
    d = model.dim
    # Hugging Face's LongformerModel has 3 * d more: one token-type row and the two position rows that RoBERTa
    # reserves for its padding offset (4098 positions): 148,659,456 and 434,600,960
    assert count + 3 * d == {"longformer_base": 148_659_456, "longformer_large": 434_600_960}[name]


def small_encoder(**kw):
    return archzoo.create_model("longformer_base", vocab_size=50, dim=32, depth=2, heads=2, max_len=64, window=8,
                                num_classes=3, dropout=0.0, **kw)


def test_encoder_global_mask_reaches_every_layer():
    torch.manual_seed(0)
    model = small_encoder().eval()
    ids = torch.randint(50, (2, 40))
    g = torch.zeros(2, 40, dtype=torch.bool)
    g[:, [0, 17]] = True
    with torch.no_grad():
        y = model(ids, global_mask=g)
        with global_tokens(model, g):                        # the same as giving the mask to each attention
            assert torch.equal(model.forward_features(ids), model.forward_features(ids, global_mask=g))
        for m in model.modules():
            if isinstance(m, LongformerAttention):
                m.global_tokens = (0, 17)
        torch.testing.assert_close(model(ids), y)
        assert all(m.call_global_mask is None for m in model.modules() if isinstance(m, LongformerAttention))


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = small_encoder().eval()
    model.save_pretrained(tmp_path)
    loaded = archzoo.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, LongformerEncoder) and loaded.num_classes == 3
    ids = torch.randint(50, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))
    model.reset_classifier(7)
    assert model(ids).shape == (2, 7)


def test_benchmark_settings_build_a_working_attention_at_task_lengths():
    assert attention_bench_specs()["longformer"].linear
    for n in (256, 1024):
        attn = build_attention("longformer", n, dim=32, heads=2, dim_head=16)
        assert attn.window == 256 and attn(torch.randn(1, n, 32), causal=True).shape == (1, n, 32)


@pytest.mark.reference
@pytest.mark.parametrize("with_global", [False, True])
def test_equals_hugging_face_longformer_self_attention(with_global):
    pytest.importorskip("transformers")
    from archzoo.papers.longformer.bench import HFLongformerAttention, copy_weights_from_hf

    torch.manual_seed(0)
    dim, heads, window, n = 64, 4, 16, 96                    # Hugging Face needs n to be a multiple of the window
    ref = HFLongformerAttention(dim, heads, dim // heads, window=window).eval()
    ours = LongformerAttention(dim, heads, dim // heads, window=window, qkv_bias=True).eval()
    copy_weights_from_hf(ours, ref)
    x, mask = torch.randn(2, n, dim), lengths_mask([n, n - 21], n)
    g = torch.zeros(2, n, dtype=torch.bool)
    if with_global:
        g[0, [0, 40]], g[1, [0, 7, 8, 60]] = True, True
    with torch.no_grad():
        y, y_ref = ours(x, mask=mask, global_mask=g), ref(x, mask=mask, global_mask=g)
    # Hugging Face zeroes the attention of padded queries; ours attends from them like FullAttention: compare
    # the real tokens
    torch.testing.assert_close(y[mask], y_ref[mask], atol=1e-5, rtol=1e-5)


@pytest.mark.reference
def test_hugging_face_longformer_model_has_three_d_more_parameters():
    pytest.importorskip("transformers")
    from transformers import LongformerConfig, LongformerModel

    cfg = LongformerConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=128, max_position_embeddings=66, attention_window=8, type_vocab_size=1)
    ours = archzoo.create_model("longformer_base", vocab_size=50, dim=32, depth=2, heads=2, max_len=64, window=8)
    assert n_params(LongformerModel(cfg)) == n_params(ours) + 3 * 32
