"""Linformer (Wang et al. 2020, arXiv:2006.04768): Eq. 7, the sharing modes of Sec. 4, slicing, padding, the
spectrum analysis of Sec. 3, presets, the reference implementation, and the claims."""

import pytest
import torch
from torch import nn

import archzoo
from archzoo.core import FullAttention, Transformer
from archzoo.data import load_dataset
from archzoo.papers.linformer import (
    LinformerAttention,
    SequenceProjection,
    attention_entropy,
    context_mapping_matrices,
    linformer_kwargs,
    normalized_cumulative_singular_values,
    shuffle_rows,
    spectrum_energy,
)

DIM, HEADS, DIM_HEAD = 24, 3, 8


def attention(seq_len=16, k=6, **kw) -> LinformerAttention:
    torch.manual_seed(0)
    return LinformerAttention(DIM, HEADS, DIM_HEAD, seq_len=seq_len, k=k, **kw).double().eval()


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def copy_projections(src: nn.Module, dst: nn.Module) -> None:
    for name in ("to_q", "to_k", "to_v", "to_out"):
        getattr(dst, name).load_state_dict(getattr(src, name).state_dict())


def eq7(attn: LinformerAttention, x, E, F):
    """Eq. 7 written out head by head: softmax(Q W_i^Q (E_i K W_i^K)^T / sqrt(d)) F_i V W_i^V, then W^O."""
    heads = []
    for i in range(attn.heads):
        rows = slice(i * attn.dim_head, (i + 1) * attn.dim_head)
        q, k, v = (x @ w.weight[rows].T for w in (attn.to_q, attn.to_k, attn.to_v))     # (B, n, d)
        scores = q @ (E[i] @ k).transpose(-1, -2) / attn.dim_head ** 0.5                  # (B, n, k)
        heads.append(torch.softmax(scores, -1) @ (F[i] @ v))                              # (B, n, d)
    return attn.to_out(torch.cat(heads, -1))


# ----------------------------------------------------------------------------- Eq. 7 and its special cases


@pytest.mark.parametrize("sharing", ["none", "headwise", "kv"])
def test_identity_projections_with_k_equal_to_n_give_full_attention(sharing):
    n = 10
    ours = attention(seq_len=n, k=n, sharing=sharing)
    full = FullAttention(DIM, HEADS, DIM_HEAD).double().eval()
    copy_projections(ours, full)
    with torch.no_grad():
        for proj in {ours.E, ours.F} - {None}:
            proj.weight.copy_(torch.eye(n, dtype=torch.float64).expand_as(proj.weight))
    x = randn(2, n, DIM)
    torch.testing.assert_close(ours(x), full(x))


def test_per_head_projections_compute_eq7_as_written():
    ours = attention(sharing="none")
    x = randn(2, 16, DIM)
    torch.testing.assert_close(ours(x), eq7(ours, x, ours.E.weight, ours.F.weight))


@pytest.mark.parametrize("sharing", ["headwise", "kv"])
def test_shared_projections_equal_eq7_with_every_head_using_the_same_matrices(sharing):
    # headwise: E_i = E, F_i = F; key-value: E_i = F_i = E (Sec. 4). Ours applies E to X before W^K.
    ours = attention(sharing=sharing)
    x = randn(2, 16, DIM)
    E = ours.E.weight.expand(HEADS, -1, -1)
    F = E if sharing == "kv" else ours.F.weight.expand(HEADS, -1, -1)
    torch.testing.assert_close(ours(x), eq7(ours, x, E, F))
    assert (ours.F is None) == (sharing == "kv")


def test_a_shorter_input_uses_the_first_columns_of_the_projection():
    long, short = attention(seq_len=16), attention(seq_len=9)
    copy_projections(long, short)
    with torch.no_grad():
        short.E.weight.copy_(long.E.weight[:, :9])
        short.F.weight.copy_(long.F.weight[:, :9])
    x = randn(2, 9, DIM)
    torch.testing.assert_close(long(x), short(x))


# ----------------------------------------------------------------------------- sharing (Sec. 4)


@pytest.mark.parametrize("sharing, distinct", [("none", 288), ("headwise", 24), ("kv", 12), ("layerwise", 1)])
def test_a_12_layer_12_head_model_has_the_papers_number_of_distinct_projections(sharing, distinct):
    # Sec. 4: "in a 12-layer, 12-head stacked Transformer model, headwise sharing, key-value sharing and
    # layerwise sharing will introduce 24, 12, and 1 distinct linear projection matrices"
    model = Transformer(24, 12, heads=12, dim_head=2, attention="linformer",
                        attention_kwargs=linformer_kwargs(32, 4, sharing))
    projections = {id(m): m for m in model.modules() if isinstance(m, SequenceProjection)}.values()
    assert sum(m.heads or 1 for m in projections) == distinct
    assert sum(p.numel() for p in model.parameters() if p.dim() >= 2 and p.shape[-2:] == (4, 32)) == distinct * 4 * 32


def test_layerwise_projection_is_one_module_trained_by_every_layer():
    model = Transformer(DIM, 3, HEADS, DIM_HEAD, attention="linformer",
                        attention_kwargs=linformer_kwargs(16, 6, "layerwise")).double()
    assert all(block.attn.E is model.blocks[0].attn.E and block.attn.F is None for block in model.blocks)
    model(randn(2, 16, DIM)).square().sum().backward()
    shared = model.blocks[0].attn.E.weight
    assert shared.grad is not None and shared.grad.abs().sum() > 0


def test_bad_sharing_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="sharing must be one of"):
        LinformerAttention(DIM, seq_len=8, k=4, sharing="blockwise")
    with pytest.raises(ValueError, match="layerwise sharing needs projection"):
        LinformerAttention(DIM, seq_len=8, k=4, sharing="layerwise")
    with pytest.raises(ValueError, match="layerwise sharing needs projection"):
        LinformerAttention(DIM, seq_len=8, k=4, sharing="kv", projection=SequenceProjection(8, 4))
    with pytest.raises(ValueError, match="projection must map seq_len=8 to k=4"):
        LinformerAttention(DIM, seq_len=8, k=4, projection=SequenceProjection(8, 3))


# ----------------------------------------------------------------------------- masks, context, bad input


def test_padded_positions_are_zeroed_before_the_projection():
    ours = attention()
    x, mask = randn(2, 16, DIM), torch.ones(2, 16, dtype=torch.bool)
    mask[0, 11:], mask[1, 5:] = False, False
    noisy = torch.where(mask[..., None], x, randn(2, 16, DIM) * 100)            # garbage in the padding
    torch.testing.assert_close(ours(x, mask=mask)[mask], ours(noisy, mask=mask)[mask])   # real tokens unchanged
    zeroed = torch.where(mask[..., None], x, 0.0)                              # = zeroing E's columns there
    torch.testing.assert_close(ours(x, mask=mask)[mask], ours(zeroed)[mask])
    torch.testing.assert_close(ours(x, mask=torch.ones_like(mask)), ours(x))


def test_cross_attention_takes_keys_and_values_from_the_context():
    ours = attention()
    x, context = randn(2, 7, DIM), randn(2, 12, DIM)
    E, F = (w.weight[:, :12].expand(HEADS, -1, -1) for w in (ours.E, ours.F))
    q = ours.to_q(x).view(2, 7, HEADS, DIM_HEAD).transpose(1, 2)
    k = (E @ ours.to_k(context).view(2, 12, HEADS, DIM_HEAD).transpose(1, 2))
    v = (F @ ours.to_v(context).view(2, 12, HEADS, DIM_HEAD).transpose(1, 2))
    expected = torch.softmax(q @ k.transpose(-1, -2) / DIM_HEAD ** 0.5, -1) @ v        # (B, H, 7, d)
    torch.testing.assert_close(ours(x, context=context), ours.to_out(expected.transpose(1, 2).reshape(2, 7, -1)))


def test_causal_attention_raises_because_the_paper_defines_none():
    with pytest.raises(ValueError, match="defines no causal"):
        attention()(randn(1, 8, DIM), causal=True)


@pytest.mark.parametrize("shape, message", [
    ((2, 17, DIM), "at most seq_len=16"), ((2, 8, DIM + 1), f"(B, N, D={DIM})"), ((8, DIM), f"(B, N, D={DIM})"),
])
def test_bad_input_raises_a_value_error_naming_the_shapes(shape, message):
    with pytest.raises(ValueError) as e:
        attention()(randn(*shape))
    assert message in str(e.value) and str(tuple(shape)) in str(e.value)


def test_bad_mask_raises_a_value_error():
    with pytest.raises(ValueError, match="mask"):
        attention()(randn(2, 8, DIM), mask=torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        attention()(randn(2, 8, DIM), mask=torch.ones(2, 8))


# ----------------------------------------------------------------------------- Sec. 3: the spectrum of P


def test_normalised_cumulative_singular_values_follow_the_definition():
    torch.manual_seed(0)
    low_rank = randn(3, 20, 4) @ randn(3, 4, 20)                              # rank 4
    curve = normalized_cumulative_singular_values(low_rank)
    torch.testing.assert_close(curve[:, 3:], torch.ones(3, 17, dtype=torch.float64))
    assert (curve[:, 2] < 1 - 1e-6).all()
    torch.testing.assert_close(normalized_cumulative_singular_values(torch.eye(8)),
                               torch.arange(1, 9, dtype=torch.float64) / 8)
    s = torch.linalg.svdvals(low_rank[0])
    torch.testing.assert_close(spectrum_energy(low_rank[0])[1], (s[:2] ** 2).sum() / (s ** 2).sum())


def test_attention_entropy_is_one_for_uniform_rows_and_zero_for_one_hot_rows():
    n = 16
    torch.testing.assert_close(attention_entropy(torch.full((2, n, n), 1 / n, dtype=torch.float64)),
                               torch.ones(2, dtype=torch.float64))
    assert float(attention_entropy(torch.eye(n, dtype=torch.float64))) == 0.0


def test_shuffled_rows_keep_each_rows_weights_and_break_shared_structure():
    n = 32
    P = torch.full((n, n), 0.5 / (n - 1), dtype=torch.float64)
    P[:, 0] = 0.5                                      # every query attends half to key 0: rank 2, shared column
    Ps = shuffle_rows(P, torch.Generator().manual_seed(0))
    torch.testing.assert_close(Ps.sort(-1).values, P.sort(-1).values)           # same weights in every row
    assert normalized_cumulative_singular_values(P)[1] > 0.999
    assert normalized_cumulative_singular_values(Ps)[1] < 0.8                    # the shared column is gone


def test_context_mapping_matrices_reproduce_the_attention_output():
    torch.manual_seed(0)
    model = Transformer(DIM, 2, HEADS, DIM_HEAD).double()
    x = randn(2, 10, DIM)
    P = context_mapping_matrices(model, x)                                     # (L, B, H, n, n)
    assert P.shape == (2, 2, HEADS, 10, 10)
    torch.testing.assert_close(P.sum(-1), torch.ones(2, 2, HEADS, 10, dtype=torch.float64))
    block = model.blocks[0]
    h = block.norm1(x)
    v = block.attn.to_v(h).view(2, 10, HEADS, DIM_HEAD).transpose(1, 2)
    torch.testing.assert_close(block.attn.to_out((P[0] @ v).transpose(1, 2).reshape(2, 10, -1)), block.attn(h))
    with pytest.raises(ValueError, match="FullAttention"):
        context_mapping_matrices(Transformer(DIM, 1, attention="linformer", attention_kwargs=dict(seq_len=10, k=4)), x)


# ----------------------------------------------------------------------------- presets


ROBERTA_SHAPE = 50265 * 768 + 512 * 768 + 12 * (4 * 768 * 768 + 768 + 2 * 768 * 3072 + 3072 + 768 + 4 * 768) + 50265


@pytest.mark.parametrize("name, n, k", [("linformer_base_n512_k128", 512, 128), ("linformer_base_n512_k256", 512, 256),
                                        ("linformer_base_n1024_k256", 1024, 256)])
@pytest.mark.parametrize("sharing, matrices", [("none", 12 * 12 * 2), ("headwise", 24), ("kv", 12), ("layerwise", 1)])
def test_base_presets_are_roberta_base_plus_the_shared_projections(name, n, k, sharing, matrices):
    with torch.device("meta"):
        model = archzoo.create_model(name, sharing=sharing)
    assert model.head.weight is model.embed.weight                             # tied masked-LM head
    expected = ROBERTA_SHAPE + (n - 512) * 768 + matrices * k * n
    assert sum(p.numel() for p in model.parameters()) == expected
    if (name, sharing) == ("linformer_base_n512_k128", "headwise"):
        assert expected == 125_646_681


def test_save_and_load_round_trip_keeps_the_layerwise_projection_shared(tmp_path):
    model = archzoo.create_model("linformer_tiny", seq_len=64, k=8, sharing="layerwise").eval()
    ids = torch.randint(16, (2, 64))
    model.save_pretrained(tmp_path)
    loaded = archzoo.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)
    assert loaded.transformer.blocks[0].attn.E is loaded.transformer.blocks[1].attn.E


def test_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    task = load_dataset("listops", length=64, n_train=16, n_test=4, seed=0)
    model = archzoo.create_model("linformer_tiny", seq_len=64, k=16)
    x, y = task.train.tensors
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = fixed_batch_losses(lambda: nn.functional.cross_entropy(model(x), y), opt, 40)
    assert losses[-1] < 0.5 * losses[0]


# ----------------------------------------------------------------------------- the public reference


@pytest.mark.reference
@pytest.mark.parametrize("share_kv, n", [(False, 16), (True, 16), (False, 11)])
def test_equals_lucidrains_linformer_with_copied_weights(share_kv, n):
    linformer = pytest.importorskip("linformer")
    torch.manual_seed(0)
    ref = linformer.LinformerSelfAttention(DIM, seq_len=16, k=6, heads=HEADS, dim_head=DIM_HEAD,
                                           share_kv=share_kv).double()
    ours = attention(seq_len=16, k=6, sharing="kv" if share_kv else "headwise")
    if share_kv:                       # the reference's share_kv also reuses W^K as W^V (V = K); ours keeps W^V
        ref.to_v = ref.to_k
    copy_projections(ref, ours)
    with torch.no_grad():
        ours.E.weight.copy_(ref.proj_k.T)                                      # the reference stores E^T (n, k)
        if not share_kv:
            ours.F.weight.copy_(ref.proj_v.T)
    x = randn(2, n, DIM)
    torch.testing.assert_close(ours(x), ref(x))


def test_quick_low_rank_claim_finds_no_learned_head_at_initialisation(quick_claim):
    record = quick_claim("linformer", "low_rank_attention")             # run once (tests/test_claims_quick.py)
    assert record["metrics"]["learned_heads"]["init"]["learned_heads_per_seed"] == [0]   # uniform rows: entropy ~1
    assert not record["passed"]                                          # 4 steps: nothing learned, nothing to judge


def test_quick_accuracy_claim_compares_full_with_linformer_at_two_k(quick_claim):
    record = quick_claim("linformer", "accuracy_near_full")             # run once (tests/test_claims_quick.py)
    metrics, n = record["metrics"], record["config"]["length"]
    assert set(metrics["accuracy"]) == {"full", f"linformer k={n // 2}", f"linformer k={n // 8}"}
    assert set(metrics["lr_sweep_val_accuracy"]) == set(metrics["lr"]) == set(metrics["accuracy"])
    assert record["passed"] == all(metrics["checks"].values())
