import math

import pytest
import torch
from einops import rearrange

from archzoo.core import FullAttention, MapSelfAttention
from archzoo.registry import get_attention

B, N, M, DIM = 2, 6, 7, 16


def naive_attention(attn, x, context=None, mask=None, causal=False):
    """softmax(Q K^T / sqrt(d)) V per head, written out from the module's weights (Vaswani et al. Eq. 1)."""
    kv = x if context is None else context
    q, k, v = (rearrange(lin(t), "b n (h d) -> b h n d", h=attn.heads)
               for t, lin in ((x, attn.to_q), (kv, attn.to_k), (kv, attn.to_v)))
    scores = q @ k.transpose(-1, -2) / math.sqrt(attn.dim_head)           # (B, H, N, M)
    allowed = torch.ones(scores.shape, dtype=torch.bool)
    if mask is not None:
        allowed &= mask[:, None, None, :]
    if causal:
        allowed &= torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
    out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    return rearrange(out, "b h n d -> b n (h d)") @ attn.to_out.weight.T + attn.to_out.bias


def lengths_mask(lengths, n):
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]     # (B, n), True = real token


@pytest.fixture
def attn():
    torch.manual_seed(0)
    return FullAttention(DIM, heads=2, dim_head=8).double()


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_full_attention_equals_naive_softmax_attention(attn, masked, causal):
    x = torch.randn(B, N, DIM, dtype=torch.float64)
    mask = lengths_mask([N, 4], N) if masked else None
    torch.testing.assert_close(attn(x, mask=mask, causal=causal), naive_attention(attn, x, mask=mask, causal=causal))


def test_qkv_bias_enters_the_projections():
    torch.manual_seed(0)
    attn = FullAttention(DIM, heads=2, dim_head=8, qkv_bias=True).double()
    assert all(lin.bias is not None for lin in (attn.to_q, attn.to_k, attn.to_v))
    for lin in (attn.to_q, attn.to_k, attn.to_v):
        torch.nn.init.normal_(lin.bias)
    x = torch.randn(B, N, DIM, dtype=torch.float64)
    torch.testing.assert_close(attn(x, causal=True), naive_attention(attn, x, causal=True))


@pytest.mark.parametrize("masked", [False, True])
def test_cross_attention_equals_naive_attention_over_the_context(attn, masked):
    x, context = torch.randn(B, N, DIM, dtype=torch.float64), torch.randn(B, M, DIM, dtype=torch.float64)
    mask = lengths_mask([3, M], M) if masked else None
    torch.testing.assert_close(attn(x, context=context, mask=mask), naive_attention(attn, x, context, mask))


def test_query_with_no_key_gets_zero_output_and_finite_gradient(attn):
    x = torch.randn(B, N, DIM, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[0] = False                    # sample 0: every key padded
    mask[1, :2] = False                # sample 1: left padding, so causal queries 0 and 1 see no key
    out = attn(x, mask=mask, causal=True)
    assert torch.equal(out[0], torch.zeros_like(out[0])) and torch.equal(out[1, :2], torch.zeros_like(out[1, :2]))
    torch.testing.assert_close(out[1, 2:], naive_attention(attn, x, mask=mask, causal=True)[1, 2:])
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_full_attention_is_registered_as_full():
    assert get_attention("full") is FullAttention


def test_bad_inputs_raise_value_errors(attn):
    x = torch.randn(B, N, DIM, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"input: expected shape \(B, N, D=16\), got \(2, 6, 8\)"):
        attn(torch.randn(B, N, 8))
    with pytest.raises(ValueError, match="mask: expected a bool tensor"):
        attn(x, mask=torch.ones(B, N))
    with pytest.raises(ValueError, match=r"mask: expected shape \(B=2, N_kv=6\)"):
        attn(x, mask=torch.ones(B, N + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="causal attention needs as many keys as queries"):
        attn(x, context=torch.randn(B, M, DIM, dtype=torch.float64), causal=True)


def test_inputs_are_cast_to_the_parameters_dtype_except_under_autocast():
    from archzoo.core import attention_inputs

    x, context = torch.randn(B, N, DIM, dtype=torch.float64), torch.randn(B, M, DIM, dtype=torch.float64)
    q, kv = attention_inputs(x, context, None, False, DIM, dtype=torch.float32)
    assert q.dtype == kv.dtype == torch.float32 and torch.equal(q, x.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attention_inputs(x, None, None, False, DIM, dtype=torch.float32)[0] is x


def test_attention_dropout_acts_in_training_only():
    torch.manual_seed(0)
    attn, x = FullAttention(DIM, heads=2, dim_head=8, dropout=0.5), torch.randn(B, N, DIM)
    assert not torch.equal(attn(x), attn(x))
    attn.eval()
    assert torch.equal(attn(x), attn(x))


def test_map_self_attention_is_full_attention_over_the_flattened_map_and_stores_the_map():
    from archzoo.engine.bench import peak_memory

    torch.manual_seed(0)
    layer = MapSelfAttention(16, heads=2, dim_head=8)
    x = torch.randn(2, 16, 6, 5)
    flat = layer.attention(rearrange(x, "b c h w -> b (h w) c"))
    assert torch.allclose(layer(x), rearrange(flat, "b (h w) c -> b c h w", h=6), atol=1e-6)
    small, large = (peak_memory(layer, (torch.randn(1, 16, s, s, requires_grad=True),)) for s in (16, 32))
    assert large / small > 8                                   # 4x the positions: the stored (n x n) map grows 16x
    with pytest.raises(ValueError, match="C"):
        layer(torch.randn(1, 8, 4, 4))
