"""BigBird (Zaheer et al. 2020, arXiv:2007.14062): block-sparse attention equals full attention under its block mask,
the ITC graph, path lengths, the transformers reference, interfaces and the quick claims."""

import math

import pytest
import torch
from einops import rearrange, repeat
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import archzoo
from archzoo.core import FullAttention, Transformer
from archzoo.papers.bigbird import (
    BigBirdAttention,
    PatternAttention,
    attention_graph,
    bench_kwargs,
    block_layout,
    dependency_norms,
    path_lengths,
    predicted_reach,
    random_block_plan,
    token_adjacency,
)

DIM = 16


def paper_block_mask(nb: int, plan: torch.Tensor) -> torch.Tensor:
    """The ITC graph written from its definition (App. D): (H, nb, nb), query block i attends to key block j."""
    heads = plan.shape[0]
    allowed = torch.zeros(heads, nb, nb, dtype=torch.bool)
    for h in range(heads):
        for i in range(nb):
            for j in range(nb):
                allowed[h, i, j] = i in (0, nb - 1) or j in (0, nb - 1) or abs(i - j) <= 1   # global, window w = 3
            if 0 < i < nb - 1:
                for j in plan[h, i - 1].tolist():                                              # random blocks
                    if j >= 0:
                        allowed[h, i, j] = True
    return allowed


def masked_softmax_attention(attn, x, allowed_tokens, mask=None):
    """softmax(Q K^T / sqrt(d)) V with only the allowed (query, key) pairs; an empty row gives zero."""
    q, k, v = (rearrange(x @ lin.weight.T, "b n (h d) -> b h n d", h=attn.heads)
               for lin in (attn.to_q, attn.to_k, attn.to_v))
    allowed = allowed_tokens[None].expand(len(x), -1, -1, -1)
    if mask is not None:
        allowed = allowed & mask[:, None, None, :]
    scores = (q @ k.transpose(-1, -2) / math.sqrt(attn.dim_head)).masked_fill(~allowed, float("-inf"))
    out = scores.softmax(-1).nan_to_num(0.0) @ v
    return rearrange(out, "b h n d -> b n (h d)") @ attn.to_out.weight.T + attn.to_out.bias


def dense_reference(attn, x, mask=None):
    n, bs = x.shape[1], attn.block_size
    nb = -(-n // bs)
    blocks = paper_block_mask(nb, attn.random_plan(nb))
    tokens = repeat(blocks, "h i j -> h (i s) (j t)", s=bs, t=bs)[:, :n, :n]
    return masked_softmax_attention(attn, x, tokens, mask)


def bigbird(block_size=4, r=3, heads=2, seed=0):
    torch.manual_seed(seed)
    attn = BigBirdAttention(DIM, heads=heads, dim_head=8, block_size=block_size, num_random_blocks=r, seed=seed)
    return attn.double()


# ----------------------------------------------------------------------------- the mechanism


@pytest.mark.parametrize("n, block_size, r", [(64, 4, 3), (61, 4, 3), (48, 8, 1), (40, 8, 0), (24, 4, 3)])
@pytest.mark.parametrize("masked", [False, True])
def test_bigbird_equals_full_attention_under_the_itc_block_mask(n, block_size, r, masked):
    attn = bigbird(block_size, r)
    x = torch.randn(2, n, DIM, dtype=torch.float64)
    mask = (torch.arange(n)[None] < torch.tensor([[n], [n - 2 * block_size - 1]])) if masked else None
    torch.testing.assert_close(attn(x, mask=mask), dense_reference(attn, x, mask), rtol=1e-10, atol=1e-12)


def test_gradients_equal_those_of_the_masked_dense_attention():
    attn = bigbird(4, 2)
    x = torch.randn(2, 40, DIM, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(attn(x).square().sum(), [x, *attn.parameters()])
    dense = torch.autograd.grad(dense_reference(attn, x).square().sum(), [x, *attn.parameters()])
    for g, d in zip(grads, dense):
        torch.testing.assert_close(g, d, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n", [8, 16, 20])
def test_with_at_most_five_blocks_every_query_sees_every_key_so_bigbird_is_full_attention(n):
    attn = bigbird(4, 3)
    full = FullAttention(DIM, heads=2, dim_head=8).double()
    missing, unexpected = full.load_state_dict(attn.state_dict(), strict=False)
    assert missing == [] and unexpected == ["seed"]          # the same projections, plus the plan's seed
    x = torch.randn(2, n, DIM, dtype=torch.float64)
    torch.testing.assert_close(attn(x), full(x))


def test_random_blocks_avoid_window_and_global_blocks_and_do_not_repeat():
    nb, r = 20, 3
    plan = random_block_plan(nb, heads=4, num_random_blocks=r, generator=torch.Generator().manual_seed(0))
    assert plan.shape == (4, nb - 2, r)
    for h in range(4):
        for i in range(1, nb - 1):
            row = plan[h, i - 1].tolist()
            assert len(set(row)) == r and all(0 < j < nb - 1 and abs(j - i) > 1 for j in row)
    assert not torch.equal(plan[0], plan[1])                  # each head has its own graph
    seen = set(plan.flatten().tolist())
    assert seen == set(range(1, nb - 1))                      # every non-global block gets drawn somewhere


def test_short_sequences_leave_unused_random_slots():
    plan = random_block_plan(6, heads=1, num_random_blocks=3, generator=torch.Generator().manual_seed(0))
    # block 1 sees 0, 1, 2 and the last block 5: only 3 and 4 remain; block 2 sees 0..3 and 5: only 4 remains
    assert sorted(plan[0, 0].tolist()) == [-1, 3, 4] and sorted(plan[0, 1].tolist()) == [-1, -1, 4]


def test_layout_masks_the_window_slot_that_repeats_a_global_block():
    nb = 8
    ids, ok = block_layout(nb, random_block_plan(nb, heads=1), window_blocks=3)
    assert ids.shape == (1, nb - 2, 2 + 3 + 3)
    assert ids[0, 0, :5].tolist() == [0, 0, 1, 2, 7] and ok[0, 0, :5].tolist() == [True, False, True, True, True]
    assert ids[0, -1, :5].tolist() == [0, 5, 6, 7, 7] and ok[0, -1, :5].tolist() == [True, True, True, False, True]
    assert ok[0, 1:-1].all()


class MaxNumel(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.largest = max([self.largest] + [t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)])
        return out


def test_no_tensor_of_forward_or_backward_grows_like_n_squared():
    n = 2048
    attn = BigBirdAttention(DIM, heads=1, dim_head=8, block_size=16, num_random_blocks=3, seed=0)
    x = torch.randn(1, n, DIM, requires_grad=True)
    with MaxNumel() as tracker:
        attn(x, mask=torch.ones(1, n, dtype=torch.bool)).sum().backward()
    assert tracker.largest <= 8 * 16 * n                       # (2 + w + r) blocks of 16 keys per query at most
    assert tracker.largest < n * n / 16


def test_the_random_graph_is_fixed_by_the_seed_buffer():
    a, b = bigbird(4, 3, seed=1), bigbird(4, 3, seed=2)
    assert not torch.equal(a.random_plan(16), b.random_plan(16))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.random_plan(16), b.random_plan(16))
    x = torch.randn(1, 64, DIM, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x))


def test_layers_of_a_transformer_get_different_random_graphs():
    torch.manual_seed(0)
    model = Transformer(DIM, depth=2, heads=2, dim_head=8, attention="bigbird", attention_kwargs=dict(block_size=4))
    plans = [block.attn.random_plan(16) for block in model.blocks]
    assert not torch.equal(plans[0], plans[1])
    assert model(torch.randn(2, 64, DIM)).shape == (2, 64, DIM)


def test_unsupported_arguments_and_bad_inputs_raise_value_errors():
    attn = bigbird()
    x = torch.randn(2, 16, DIM, dtype=torch.float64)
    with pytest.raises(ValueError, match="no causal form"):
        attn(x, causal=True)
    with pytest.raises(ValueError, match="context"):
        attn(x, context=x)
    with pytest.raises(ValueError, match=r"expected shape \(B, N, D=16\)"):
        attn(torch.randn(2, 16, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="mask"):
        attn(x, mask=torch.ones(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        attn(x, mask=torch.ones(2, 16))
    with pytest.raises(ValueError, match="odd"):
        BigBirdAttention(DIM, window_blocks=2)
    with pytest.raises(ValueError, match="random block ids"):
        attn.set_random_plan(torch.full((2, 2, 3), 9))


def test_a_fully_padded_sample_gets_zero_output_and_finite_gradients():
    attn = bigbird(4, 3)
    x = torch.randn(2, 32, DIM, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 32, dtype=torch.bool)
    mask[0] = False
    out = attn(x, mask=mask)
    torch.testing.assert_close(out[0], attn.to_out.bias.expand(32, -1))      # zero attention output, then W^O
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- the attention graph (Sec. 2)


def test_window_only_graph_is_a_path_whose_diameter_grows_like_n():
    for nb in (8, 32):
        stats = path_lengths(attention_graph(nb, "W"))
        assert stats["diameter"] == nb - 1
        assert stats["mean_path"] == pytest.approx((nb + 1) / 3)     # mean |i - j| over ordered pairs i != j


def test_global_blocks_connect_every_pair_in_two_hops():
    g = torch.Generator().manual_seed(0)
    assert path_lengths(attention_graph(256, "BigBird", generator=g))["diameter"] == 2


def test_token_graph_has_the_path_lengths_of_its_block_graph():
    nb, bs = 12, 3
    blocks = attention_graph(nb, "R+W", generator=torch.Generator().manual_seed(0))
    b, t = path_lengths(blocks), path_lengths(token_adjacency(blocks, bs))
    n = nb * bs
    assert t["diameter"] == b["diameter"]
    # same-block token pairs are one hop apart; others as far as their blocks
    expected = (nb * bs * (bs - 1) + bs * bs * b["mean_path"] * nb * (nb - 1)) / (n * (n - 1))
    assert t["mean_path"] == pytest.approx(expected)


def test_pattern_attention_under_the_bigbird_graph_equals_bigbird_attention():
    attn = bigbird(4, 2)
    twin = PatternAttention(DIM, heads=2, dim_head=8, pattern="BigBird", block_size=4, num_random_blocks=2,
                            seed=0).double()
    twin.load_state_dict(attn.state_dict())
    x = torch.randn(2, 40, DIM, dtype=torch.float64)
    torch.testing.assert_close(twin(x), attn(x), rtol=1e-10, atol=1e-12)


def stack(attention, depth=3, **kw):
    torch.manual_seed(0)
    return Transformer(DIM, depth, heads=2, dim_head=8, attention=attention, attention_kwargs=kw).double()


@pytest.mark.parametrize("attention, kw", [(BigBirdAttention, {}), (PatternAttention, dict(pattern="R+W")),
                                           (PatternAttention, dict(pattern="W"))])
def test_jacobian_dependencies_of_a_layer_stack_follow_its_composed_attention_graphs(attention, kw):
    nb, bs = 10, 2
    model = stack(attention, block_size=bs, **kw)
    rows = torch.arange(nb * bs)
    measured = dependency_norms(model.blocks, torch.randn(1, nb * bs, DIM, dtype=torch.float64), rows) > 0
    reach = predicted_reach([block.attn.block_adjacency(nb) for block in model.blocks])     # (L, nb, nb)
    assert torch.equal(measured, repeat(reach, "l i j -> l (i s) (j t)", s=bs, t=bs))


def test_a_window_only_stack_reaches_one_more_block_per_layer():
    nb, bs = 12, 2
    model = stack(PatternAttention, depth=4, block_size=bs, pattern="W")
    rows = torch.arange(nb) * bs
    measured = dependency_norms(model.blocks, torch.randn(1, nb * bs, DIM, dtype=torch.float64), rows) > 0
    gap = (torch.arange(nb)[:, None] - torch.arange(nb * bs)[None] // bs).abs()     # (nb, N) block distance
    for depth in range(4):
        assert torch.equal(measured[depth], gap <= depth + 1)


def test_pattern_attention_refuses_masks_and_ragged_lengths():
    attn = PatternAttention(DIM, heads=2, dim_head=8, block_size=4)
    with pytest.raises(ValueError, match="multiple of block_size"):
        attn(torch.randn(1, 10, DIM))
    with pytest.raises(ValueError, match="mask"):
        attn(torch.randn(1, 8, DIM), mask=torch.ones(1, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="pattern"):
        PatternAttention(DIM, pattern="G")


# ----------------------------------------------------------------------------- presets, bench and claims


def test_bench_kwargs_keep_sixteen_blocks_and_use_the_papers_blocks_of_64_from_1024():
    assert [bench_kwargs(n)["block_size"] for n in (64, 256, 512, 1024, 16384)] == [4, 16, 32, 64, 64]


def test_bigbird_small_has_full_attentions_parameters():
    model = archzoo.create_model("bigbird_small", vocab_size=20, num_classes=10)
    full = archzoo.core.SequenceTransformer(20, 10, max_len=1024, per_token=False)
    n_params = sum(p.numel() for p in model.parameters())
    # tokens 20 x 64 + positions 1024 x 64 + 2 x (attention 4 x 64^2 + 64, MLP 64 x 256 x 2 + 256 + 64, 2 LayerNorms)
    # + final LayerNorm + head 64 x 10 + 10
    assert n_params == sum(p.numel() for p in full.parameters()) == 167_178


def test_training_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = archzoo.create_model("bigbird_small", vocab_size=12, num_classes=4, block_size=8)
    ids, y = torch.randint(0, 12, (8, 128)), torch.randint(0, 4, (8,))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = fixed_batch_losses(lambda: torch.nn.functional.cross_entropy(model(ids), y), opt, 15)
    assert losses[-1] < 0.5 * losses[0]


def test_quick_graph_diameter_claim_measures_two_layer_reach_for_bigbird_only(quick_claim):
    record = quick_claim("bigbird", "graph_diameter")                    # run once (tests/test_claims_quick.py)
    metrics = record["metrics"]
    assert metrics["checks"]["layers realize their graphs"]
    assert all(f[1] == 1.0 for f in metrics["reached_fraction"]["BigBird"].values())
    assert all(f[1] < 1.0 for f in metrics["reached_fraction"]["W"].values())


# ----------------------------------------------------------------------------- the transformers reference


@pytest.mark.reference
@pytest.mark.parametrize("n, block_size", [(512, 32), (1024, 64)])     # transformers' two plan generators
def test_equals_transformers_block_sparse_attention_with_its_random_plan(n, block_size):
    pytest.importorskip("transformers")
    from archzoo.papers.bigbird import HFBigBirdSelfAttention

    torch.manual_seed(0)
    hf = HFBigBirdSelfAttention(n, 64, 4, 16, block_size, num_random_blocks=3, seed=5)   # training mode: random blocks
    plans = []
    gather = hf.attn.torch_gather_b2
    hf.attn.torch_gather_b2 = lambda params, indices: (plans.append(indices), gather(params, indices))[1]
    x = torch.randn(2, n, 64)
    expected = hf(x)
    ours = BigBirdAttention(64, heads=4, dim_head=16, block_size=block_size, num_random_blocks=3)
    ours.set_random_plan(plans[0][0])                          # transformers draws one plan for the whole batch
    assert torch.equal(plans[0][0], plans[0][1])
    with torch.no_grad():
        for mine, theirs in ((ours.to_q, hf.attn.query), (ours.to_k, hf.attn.key), (ours.to_v, hf.attn.value),
                             (ours.to_out, hf.out)):
            mine.weight.copy_(theirs.weight)
        ours.to_out.bias.copy_(hf.out.bias)
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_quick_task_accuracy_claim_has_its_window_only_control(quick_claim):
    record = quick_claim("bigbird", "task_accuracy")                     # run once (tests/test_claims_quick.py)
    metrics = record["metrics"]
    assert set(metrics["accuracy"]) == {"full", "BigBird", "window only"}
    assert set(metrics["lr_sweep_val_accuracy"]) == set(metrics["lr"]) == set(metrics["accuracy"])
    assert record["passed"] == all(metrics["checks"].values())
