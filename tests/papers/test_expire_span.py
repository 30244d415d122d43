"""Expire-Span (arXiv:2105.06548): the expiration mask, its equivalences, pruning, the span loss and the preset."""

import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.core.attention import FullAttention
from archzoo.papers.expire_span import ExpireSpanAttention, ExpireSpanTransformer, expire_mask
from archzoo.papers.expire_span.task import make_remember_key


def layer(dim=16, **kw):
    torch.manual_seed(0)
    return ExpireSpanAttention(dim, heads=2, dim_head=8, **kw).double()


def test_mask_is_one_inside_the_span_a_linear_ramp_over_r_and_zero_after():
    spans = torch.tensor([4.0])
    distance = torch.arange(0, 12, dtype=torch.float64)[:, None]          # t - i = 0..11, one memory
    m = expire_mask(spans.double(), distance, ramp=4.0)[:, 0]              # (12,)
    assert torch.equal(m[:5], torch.ones(5, dtype=torch.float64))          # r = e - (t - i) >= 0
    torch.testing.assert_close(m[4:9], torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    assert torch.equal(m[8:], torch.zeros(4, dtype=torch.float64))         # r <= -R


def test_with_spans_beyond_the_sequence_the_layer_is_causal_attention():
    attn = layer(max_span=64, span_init=40.0)                               # e = 64 sigma(40) = 64 > N
    full = FullAttention(16, heads=2, dim_head=8).double()
    full.load_state_dict(attn.state_dict(), strict=False)
    x = torch.randn(2, 20, 16, dtype=torch.float64)
    attn.reset()
    torch.testing.assert_close(attn(x), full(x, causal=True))


def test_pruning_expired_memories_does_not_change_the_outputs():
    torch.manual_seed(1)
    ids = torch.randint(0, 12, (3, 60))
    kw = dict(dim=16, depth=2, heads=2, dim_head=8, block_size=8, max_span=12, ramp=4.0, span_init=0.0)
    pruned = ExpireSpanTransformer(12, 12, **kw).double()
    with torch.no_grad():                                                  # spans that differ between tokens
        for attn in pruned.layers():
            attn.span_predictor.weight.normal_(0, 1.0)
    kept = ExpireSpanTransformer(12, 12, prune=False, **kw).double()
    kept.load_state_dict(pruned.state_dict())
    torch.testing.assert_close(pruned(ids), kept(ids))
    assert sum(len(a.positions) for a in pruned.layers()) < sum(len(a.positions) for a in kept.layers())


def test_the_gradient_reaches_the_span_predictor_through_the_ramp():
    attn = layer(max_span=8, ramp=4.0, alpha=0.0, span_init=0.0)           # e = 4: memories in the ramp
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    attn.reset()
    attn(x).sum().backward()
    assert attn.span_predictor.bias.grad.abs() > 1e-6


def test_the_span_loss_is_alpha_times_the_sum_of_spans_over_l_per_token():
    attn = layer(max_span=10, alpha=0.3)
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    attn.reset(tokens=7)
    attn(x)
    e = 10 * torch.sigmoid(attn.span_predictor(x).squeeze(-1))            # Eq. 3
    torch.testing.assert_close(attn.aux_loss, 0.3 * e.sum() / 10 / (2 * 7))


def test_outputs_are_causal():
    model = ExpireSpanTransformer(10, 10, dim=16, depth=2, heads=2, dim_head=8, block_size=4, max_span=16).double()
    ids = torch.randint(0, 10, (2, 19))
    changed = ids.clone()
    changed[:, 11:] = (changed[:, 11:] + 1) % 10
    torch.testing.assert_close(model(ids)[:, :11], model(changed)[:, :11])
    assert not torch.allclose(model(ids)[:, 11:], model(changed)[:, 11:])


def test_a_context_or_padding_mask_is_refused():
    attn = layer()
    with pytest.raises(ValueError, match="causal"):
        attn(torch.randn(1, 4, 16, dtype=torch.float64), causal=False)


def test_the_preset_has_its_parameter_count():
    model = archzoo.create_model("expire_span_lm")
    layer = 4 * 64 * 64 + 64 + (64 + 1) + 2 * 2 * 64 + (64 * 256 + 256 + 256 * 64 + 64)   # attention, span, norms, MLP
    assert sum(p.numel() for p in model.parameters()) == 256 * 64 + 2 * layer + 2 * 64 + 64 * 256 + 256 == 132_866


def test_training_lowers_the_loss_on_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = ExpireSpanTransformer(10, 10, dim=16, depth=1, heads=2, dim_head=8, block_size=8, max_span=16)
    ids = torch.randint(0, 10, (4, 24))

    def loss():
        task = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        return task + sum(attn.aux_loss for attn in model.layers())

    losses = fixed_batch_losses(loss, torch.optim.Adam(model.parameters(), 1e-2), 30)
    assert losses[-1] < 0.5 * losses[0]


def test_the_task_has_one_key_in_the_window_noise_elsewhere_and_asks_for_it_at_the_end():
    x, y = make_remember_key(50, 30, seed=3, num_keys=4, num_noise=6, key_window=5)
    is_key = (x >= 1) & (x <= 4)
    assert is_key.sum(1).eq(1).all() and not is_key[:, 5:].any()
    assert x[:, -1].eq(4 + 6 + 1).all() and (x[:, :-1] <= 10).all()
    assert torch.equal(y[:, -1], x[is_key] - 1) and y[:, :-1].eq(-100).all()


def test_the_quick_claim_measures_memory_and_spans(quick_claim):
    metrics = quick_claim("expire_span", "remember_key")["metrics"]
    full = metrics["full_cache"]
    assert full["memory"][0] == (0 + 8 + 16 + 24 + 32) / 5           # the full cache holds every earlier block
    assert 0 <= metrics["expire_span"]["memory"][0] <= full["memory"][0]
