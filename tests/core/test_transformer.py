import pytest
import torch
from torch import nn

from archzoo.core import MLP, FeedForward, FullAttention, Transformer, TransformerBlock

DIM, N = 16, 6


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return Transformer(DIM, depth=2, heads=2, dim_head=8, **kw).double().eval()


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_causal_transformer_never_looks_ahead(norm):
    model, t = tiny(norm=norm), 2
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    x2 = x.clone()
    x2[:, t + 1] += torch.randn(2, DIM, dtype=torch.float64)
    torch.testing.assert_close(model(x, causal=True)[:, : t + 1], model(x2, causal=True)[:, : t + 1])
    assert not torch.allclose(model(x)[:, : t + 1], model(x2)[:, : t + 1])    # without causal it does look


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("causal", [False, True])
def test_padded_tokens_do_not_change_real_tokens(norm, causal):
    model = tiny(norm=norm)
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    mask = torch.tensor([[True] * N, [True] * 4 + [False] * 2])
    x2 = x.clone()
    x2[1, 4:] = torch.randn(2, DIM, dtype=torch.float64)
    y, y2 = model(x, mask=mask, causal=causal), model(x2, mask=mask, causal=causal)
    torch.testing.assert_close(y[mask], y2[mask])


def test_decoder_cross_attends_to_the_context_under_its_mask():
    model = tiny(cross_attention=True)
    x, context = torch.randn(2, N, DIM, dtype=torch.float64), torch.randn(2, 5, DIM, dtype=torch.float64)
    context_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    changed = context.clone()
    changed[1, 3:] += 1.0                                   # padded context tokens only
    y = model(x, causal=True, context=context, context_mask=context_mask)
    torch.testing.assert_close(y, model(x, causal=True, context=changed, context_mask=context_mask))
    assert not torch.allclose(y, model(x, causal=True, context=changed))


def test_context_needs_cross_attention_and_vice_versa():
    with pytest.raises(ValueError, match="no cross-attention"):
        tiny()(torch.randn(1, N, DIM, dtype=torch.float64), context=torch.randn(1, 3, DIM, dtype=torch.float64))
    with pytest.raises(ValueError, match="pass context"):
        tiny(cross_attention=True)(torch.randn(1, N, DIM, dtype=torch.float64))


def test_attention_by_name_or_class_and_feedforward_by_name_or_factory_build_the_same_model():
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    by_name = tiny(attention="full", feedforward="relu")
    by_object = tiny(attention=FullAttention, feedforward=lambda d: FeedForward(d, 4.0, act="relu"))
    torch.testing.assert_close(by_name(x), by_object(x))
    assert isinstance(tiny(feedforward=MLP).blocks[0].ff, MLP)             # a class is called as cls(dim)


def test_attention_kwargs_reach_the_attention():
    block = TransformerBlock(DIM, heads=2, dim_head=8, attention_kwargs=dict(context_dim=8), cross_attention=False)
    assert block.attn.to_k.in_features == 8


def test_bad_configurations_raise_value_errors():
    with pytest.raises(ValueError, match="did you mean full"):
        Transformer(DIM, 1, attention="ful")
    with pytest.raises(ValueError, match="unknown feed-forward 'mpl'; did you mean mlp"):
        Transformer(DIM, 1, feedforward="mpl")
    with pytest.raises(ValueError, match="norm must be 'pre' or 'post'"):
        Transformer(DIM, 1, norm="sandwich")
    with pytest.raises(ValueError, match="module instance"):
        Transformer(DIM, 2, feedforward=nn.Identity())
    with pytest.raises(ValueError, match=r"expected shape \(B, N, D=16\), got \(2, 6\)"):
        Transformer(DIM, 1)(torch.randn(2, N))


def test_float64_input_and_context_compute_as_float32_in_a_float32_stack():
    torch.manual_seed(0)
    model = Transformer(DIM, depth=1, heads=2, dim_head=8, cross_attention=True)
    x, context = torch.randn(2, N, DIM), torch.randn(2, 3, DIM)
    expected = model(x, context=context)
    torch.testing.assert_close(model(x.double(), context=context.double()), expected)
    with pytest.raises(ValueError, match="expected a float tensor, got torch.int64"):
        model(torch.ones(2, N, DIM, dtype=torch.long), context=context)


def test_post_norm_stack_has_no_final_norm():
    assert isinstance(Transformer(DIM, 1, norm="post").norm, nn.Identity)
    assert isinstance(Transformer(DIM, 1, norm="pre").norm, nn.LayerNorm)


def test_tiny_transformer_fits_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = nn.ModuleDict(dict(body=Transformer(DIM, depth=1, heads=2, dim_head=8), head=nn.Linear(DIM, 4)))
    x, y = torch.randn(16, N, DIM), torch.randint(0, 4, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    def loss():
        return nn.functional.cross_entropy(model["head"](model["body"](x, causal=True)[:, -1]), y)

    losses = fixed_batch_losses(loss, opt, 20)
    assert losses[-1] < 0.2 * losses[0]
