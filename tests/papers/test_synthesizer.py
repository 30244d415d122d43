"""Synthesizer (Tay et al. 2020, arXiv:2005.00743): the synthesizing functions' formulas, Table 1's parameter counts,
causality, padding, the mixture's reduction to dot-product attention, the fused path against the formula,
presets, bad input and the claims."""

import itertools

import pytest
import torch

import archzoo
from archzoo.core import FullAttention, Transformer
from archzoo.engine.train import train
from archzoo.papers.synthesizer import (
    DenseSynthesizer,
    FactorizedDenseSynthesizer,
    FactorizedRandomSynthesizer,
    RandomSynthesizer,
    SynthesizerAttention,
)
from archzoo.papers.synthesizer.claims import task_data
from archzoo.papers.synthesizer.synthesizers import default_factors

VARIANTS = ("dense", "random", "factorized_dense", "factorized_random", "vanilla", "random+vanilla",
            "dense+vanilla", "dense+random+factorized_dense+factorized_random+vanilla")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def attention(synthesizer: str, dim=16, heads=2, dim_head=8, seq_len=12, **kw) -> SynthesizerAttention:
    torch.manual_seed(0)
    return SynthesizerAttention(dim, heads, dim_head, seq_len=seq_len, synthesizer=synthesizer, **kw).double()


def reference_output(attn: SynthesizerAttention, x, mask=None, causal=False):
    """softmax(sum_n alpha_n S_n(X)) G(X) W^O, written out from `logits` (masked logits -> -inf)."""
    b, n, _ = x.shape
    keep = torch.ones(b, 1, n, n, dtype=torch.bool)
    if causal:
        keep = keep & torch.ones(n, n, dtype=torch.bool).tril()
    if mask is not None:
        keep = keep & mask[:, None, None, :]
    p = attn.logits(x).masked_fill(~keep, float("-inf")).softmax(-1).nan_to_num(0.0)   # empty rows -> 0
    v = attn.to_v(x).view(b, n, attn.heads, attn.dim_head).transpose(1, 2)
    out = attn.to_out((p @ v).transpose(1, 2).reshape(b, n, -1))
    return out.masked_fill(~keep.any(-1).transpose(1, 2), 0.0)


# ----------------------------------------------------------------------------- the synthesizing functions


def test_dense_synthesizer_logits_are_the_two_layer_mlp_of_eq_1_2():
    torch.manual_seed(0)
    synth = DenseSynthesizer(dim=6, heads=1, dim_head=6, seq_len=9).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    W1, b1 = synth.w1.weight, synth.w1.bias                               # (d, d), (d,)
    W2, b2 = synth.w2[0].T, synth.b2[0]                                   # (d, l), (l,)
    B = torch.relu(x @ W1.T + b1) @ W2 + b2                               # F(X_i) = W_2 relu(W_1 X_i + b_1) + b_2
    torch.testing.assert_close(synth.logits(x)[:, 0], B)


def test_dense_synthesizer_row_depends_only_on_its_own_token():
    torch.manual_seed(0)
    synth = DenseSynthesizer(dim=8, heads=2, dim_head=4, seq_len=7).double()
    x = torch.randn(1, 7, 8, dtype=torch.float64)
    y = x.clone()
    y[:, 3] += 1.0                                                        # change token 3 only
    changed = (synth.logits(x) - synth.logits(y)).abs().amax(dim=(0, 1, 3)) > 0
    assert changed.tolist() == [False, False, False, True, False, False, False]


def test_dense_synthesizer_bilinear_form_equals_its_logits():
    torch.manual_seed(0)
    synth = DenseSynthesizer(dim=8, heads=2, dim_head=4, seq_len=10).double()
    x = torch.randn(3, 7, 8, dtype=torch.float64)                         # N = 7 < l = 10
    q, k = synth.bilinear(x)
    torch.testing.assert_close(q @ k.transpose(-1, -2), synth.logits(x))


def test_random_synthesizer_logits_ignore_the_input():
    synth = RandomSynthesizer(heads=2, seq_len=6).double()
    a, b = torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(2, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(synth.logits(a), synth.logits(b))
    torch.testing.assert_close(synth.logits(a)[0], synth.R[:, :5, :5])


def test_fixed_random_synthesizer_is_saved_but_never_trained():
    synth = RandomSynthesizer(heads=2, seq_len=6, fixed=True)
    assert n_params(synth) == 0 and "R" in synth.state_dict()


def test_factorized_random_is_rank_k_and_its_bilinear_form_equals_its_logits():
    torch.manual_seed(0)
    synth = FactorizedRandomSynthesizer(heads=2, seq_len=20, k=3).double()
    x = torch.zeros(1, 20, 4, dtype=torch.float64)
    logits = synth.logits(x)
    assert torch.linalg.matrix_rank(logits[0]).tolist() == [3, 3]
    q, k = synth.bilinear(x)
    torch.testing.assert_close(q @ k.transpose(-1, -2), logits)


def test_factorized_dense_tiles_compose_every_pair_of_a_and_b_once():
    """C_i[q a + p] = A_i[p] B_i[q]: C_i is the outer product B_i A_i^T laid out row by row."""
    torch.manual_seed(0)
    synth = FactorizedDenseSynthesizer(dim=6, heads=1, dim_head=6, seq_len=12, factors=(3, 4)).double()
    x = torch.randn(2, 12, 6, dtype=torch.float64)
    hidden = torch.relu(synth.w1(x))                                      # (B, N, d_h)
    A = hidden @ synth.wa[0].T + synth.ba[0]                              # (B, N, a=3)
    B = hidden @ synth.wb[0].T + synth.bb[0]                              # (B, N, b=4)
    C = torch.einsum("bnq,bnp->bnqp", B, A).reshape(2, 12, 12)
    torch.testing.assert_close(synth.logits(x)[:, 0], C)


def test_default_factors_multiply_to_l():
    assert default_factors(512) == (16, 32) and default_factors(256) == (16, 16) and default_factors(13) == (1, 13)


# ----------------------------------------------------------------------------- Table 1: parameter counts


def test_parameter_counts_of_table_1():
    """Per-layer attention parameters for d = 512, h = 8 heads of d_h = 64 (h d_h = d), l = 512, k = 8, a x b = 16 x 32.

    Table 1 counts the weights of the synthesizing function (biases aside): dot product 2 d^2 (W^Q, W^K),
    random l^2 per head, factorized random 2 l k per head, dense d^2 + d l, factorized dense d^2 + d (a + b).
    Every variant adds G (W^V, d^2) and W^O (d^2 + d), and a mixture one weight alpha per component. By hand:
      G + W^O:            512*512 + 512*512 + 512                          =   524,800
      vanilla:   2 d^2  = 2*512*512                                        =   524,288
      random:    h l^2  = 8*512*512                                        = 2,097,152
      fac. random: h 2lk = 8*2*512*8                                       =    65,536
      dense:     d^2 + d l = 512*512 + 512*512 = 524,288, + b_1 512 + b_2 8*512 = 528,896
      fac. dense: d^2 + d (a + b) = 262,144 + 512*48 = 286,720, + b_1 512 + 8*(16 + 32) = 287,616
    """
    d, h, dh, l, k = 512, 8, 64, 512, 8
    shared = d * d + d * d + d
    expected = {
        "vanilla": shared + 2 * d * d,
        "random": shared + h * l * l,
        "factorized_random": shared + h * 2 * l * k,
        "dense": shared + (d * d + d * l) + d + h * l,
        "factorized_dense": shared + (d * d + d * (16 + 32)) + d + h * (16 + 32),
        "random+vanilla": shared + h * l * l + 2 * d * d + 2,
        "dense+vanilla": shared + d * d + d * l + d + h * l + 2 * d * d + 2,
    }
    assert expected["dense"] == 524_800 + 528_896 and expected["factorized_dense"] == 524_800 + 287_616
    for synthesizer, count in expected.items():
        attn = SynthesizerAttention(d, h, dh, seq_len=l, synthesizer=synthesizer, k=k)
        assert n_params(attn) == count, synthesizer
    assert n_params(SynthesizerAttention(d, h, dh, seq_len=l, synthesizer="random", fixed_random=True)) == shared
    vanilla = SynthesizerAttention(d, h, dh, seq_len=l, synthesizer="vanilla")
    assert n_params(vanilla) == n_params(FullAttention(d, h, dh))


def test_preset_parameter_counts():
    """Transformer base widths, 6 layers, vocabulary 32,000, 2 classes, sinusoidal positions: the token embedding
    (16,384,000), 6 x (attention + feed-forward 2,099,712 + two LayerNorms 2,048), the final LayerNorm 1,024 and
    the head 1,026."""
    rest = 32000 * 512 + 6 * (2 * 512 * 2048 + 2048 + 512 + 2 * 1024) + 1024 + 1026
    for name, attn in {"synthesizer_vanilla_base": 1_049_088, "synthesizer_dense_base": 1_053_696,
                       "synthesizer_random_base": 2_621_952, "synthesizer_fixed_random_base": 524_800,
                       "synthesizer_factorized_dense_base": 812_416, "synthesizer_factorized_random_base": 590_336,
                       "synthesizer_random_vanilla_base": 3_146_242}.items():
        assert n_params(archzoo.create_model(name)) == rest + 6 * attn, name


# ----------------------------------------------------------------------------- the attention


@pytest.mark.parametrize("synthesizer", VARIANTS)
def test_fused_path_equals_softmax_of_the_synthesized_logits(synthesizer):
    attn = attention(synthesizer)
    x = torch.randn(3, 10, 16, dtype=torch.float64)
    mask = torch.rand(3, 10, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[2] = False                                                       # a sequence with every key padded
    for causal, m in itertools.product((False, True), (None, mask)):
        torch.testing.assert_close(attn(x, mask=m, causal=causal), reference_output(attn, x, m, causal))


@pytest.mark.parametrize("synthesizer", VARIANTS)
def test_causal_output_at_t_ignores_tokens_after_t(synthesizer):
    attn = attention(synthesizer)
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    y = x.clone()
    y[:, 7:] = torch.randn(2, 5, 16, dtype=torch.float64)                # change tokens 7..11
    out_x, out_y = attn(x, causal=True), attn(y, causal=True)
    torch.testing.assert_close(out_x[:, :7], out_y[:, :7])
    assert not torch.allclose(out_x[:, 7:], out_y[:, 7:])


@pytest.mark.parametrize("synthesizer", VARIANTS)
def test_padded_tokens_do_not_change_the_real_tokens_outputs(synthesizer):
    attn = attention(synthesizer)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, 6:] = False
    y = x.clone()
    y[:, 6:] = torch.randn(2, 3, 16, dtype=torch.float64)
    torch.testing.assert_close(attn(x, mask=mask)[:, :6], attn(y, mask=mask)[:, :6])


def test_mixture_with_weight_one_on_vanilla_is_full_attention_on_the_same_weights():
    mix = attention("random+vanilla", mixture_weights=(0.0, 1.0), learn_mixture=False)
    full = FullAttention(16, 2, 8).double()
    missing, unexpected = full.load_state_dict(mix.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"synthesizers.random.R", "mixture_logits"}
    x = torch.randn(3, 10, 16, dtype=torch.float64)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 7:] = False
    for causal, m in itertools.product((False, True), (None, mask)):
        torch.testing.assert_close(mix(x, mask=m, causal=causal), full(x, mask=m, causal=causal))


def test_mixture_logits_are_the_alpha_weighted_sum_and_alpha_is_learned():
    attn = attention("dense+random", mixture_weights=(1.0, 3.0))
    x = torch.randn(2, 8, 16, dtype=torch.float64)
    alpha = attn.alpha()
    torch.testing.assert_close(alpha, torch.tensor([0.25, 0.75], dtype=torch.float64))
    expected = 0.25 * attn.synthesizers["dense"].logits(x) + 0.75 * attn.synthesizers["random"].logits(x)
    torch.testing.assert_close(attn.logits(x), expected)
    attn(x).sum().backward()
    assert attn.mixture_logits.grad is not None and attn.mixture_logits.grad.abs().sum() > 0


def test_shorter_sequences_use_the_first_n_positions():
    attn = attention("random+dense", seq_len=12)
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    full, short = attn.logits(x), attn.logits(x[:, :5])
    torch.testing.assert_close(short[0, :, :, :], full[0, :, :5, :5])


def test_transformer_with_the_synthesizer_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = Transformer(16, 2, heads=2, dim_head=8, attention="synthesizer",
                        attention_kwargs=dict(seq_len=8, synthesizer="random+vanilla"))
    x, target = torch.randn(4, 8, 16), torch.randn(4, 8, 16)
    data = torch.utils.data.TensorDataset(x, target)
    result = train(model, data, steps=40, batch_size=4, lr=1e-2, progress=False,
                   loss_fn=lambda m, batch: torch.nn.functional.mse_loss(m(batch[0]), batch[1]))
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_value_error_naming_the_shapes():
    attn = attention("dense", seq_len=12)
    with pytest.raises(ValueError, match=r"expected shape \(B, N, D=16\), got \(2, 5, 8\)"):
        attn(torch.randn(2, 5, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="at most seq_len=12"):
        attn(torch.randn(2, 13, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="cross-attention"):
        attn(torch.randn(2, 5, 16, dtype=torch.float64), context=torch.randn(2, 5, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="mask"):
        attn(torch.randn(2, 5, 16, dtype=torch.float64), mask=torch.ones(2, 4, dtype=torch.bool))


def test_bad_configuration_raises_value_error():
    with pytest.raises(ValueError, match="synthesizer must be one of"):
        SynthesizerAttention(16, seq_len=8, synthesizer="random+conv")
    with pytest.raises(ValueError, match="synthesizer must be one of"):
        SynthesizerAttention(16, seq_len=8, synthesizer="random+random")
    with pytest.raises(ValueError, match="a \\* b = l"):
        SynthesizerAttention(16, seq_len=8, synthesizer="factorized_dense", factors=(3, 3))
    with pytest.raises(ValueError, match="mixture_weights"):
        SynthesizerAttention(16, seq_len=8, synthesizer="random+vanilla", mixture_weights=(1.0,))
    with pytest.raises(ValueError, match="learn_mixture=False"):
        SynthesizerAttention(16, seq_len=8, synthesizer="random+vanilla", mixture_weights=(0.0, 1.0))


# ----------------------------------------------------------------------------- presets and claims


def test_fixed_random_preset_keeps_r_in_the_checkpoint(tmp_path):
    model = archzoo.create_model("synthesizer_fixed_random_base", dim=32, depth=1, heads=2, dim_head=16, max_len=16,
                                 vocab_size=20)
    model.save_pretrained(tmp_path)
    loaded = archzoo.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.transformer.blocks[0].attn.synthesizers["random"].R,
                               model.transformer.blocks[0].attn.synthesizers["random"].R)


def test_associative_recall_is_scored_at_the_query_only():
    from archzoo.data import IGNORE_INDEX, load_dataset

    task = task_data("associative_recall", length=9, n_train=5, n_test=3)
    plain = load_dataset("associative_recall", length=9, n_train=5, n_test=3)
    assert task.per_token and task.num_classes == plain.num_classes
    for split, ref in ((task.train, plain.train), (task.test, plain.test)):
        (x, y), (x_ref, y_ref) = split.tensors, ref.tensors
        torch.testing.assert_close(x, x_ref)
        torch.testing.assert_close(y[:, -1], y_ref)                      # the query's value, at the query
        assert (y[:, :-1] == IGNORE_INDEX).all()
    copy = task_data("copy", length=9, n_train=5, n_test=3)
    torch.testing.assert_close(copy.test.tensors, load_dataset("copy", length=9, n_train=5, n_test=3).test.tensors)


def test_quick_random_alignment_claim_passed_follows_its_criterion(quick_claim):
    record = quick_claim("synthesizer", "random_alignment_learns")       # run once (tests/test_claims_quick.py)
    m = record["metrics"]
    acc, gain, chance = m["accuracy"], m["gain_over_chance"], m["chance"]["associative_recall"]
    assert set(acc) == {"vanilla", "random", "fixed_random"}
    for method, a in acc.items():
        assert gain[method] == pytest.approx(a - chance)
        assert len(m["accuracy_per_seed"]["associative_recall"][method]) == record["config"]["seeds"]
    assert m["vanilla_learned"] == (acc["vanilla"] >= 90.0)
    assert m["random_competitive"] == (gain["random"] >= 0.8 * gain["vanilla"])
    assert m["control_falls_short"] == (gain["fixed_random"] < gain["random"])
    assert record["passed"] == (m["vanilla_learned"] and m["random_competitive"] and m["control_falls_short"])
    for method, lr in m["lr"]["associative_recall"].items():             # each model's lr is its best on validation
        val = m["lr_sweep_val_accuracy"]["associative_recall"][method]
        assert val[str(lr)] == max(val.values())


def test_quick_mixture_claim_passed_follows_its_criterion(quick_claim):
    record = quick_claim("synthesizer", "mixture_matches_vanilla")       # run once (tests/test_claims_quick.py)
    acc, margin = record["metrics"]["accuracy"], record["metrics"]["margin"]
    for task in ("copy", "listops"):
        assert margin[task] == pytest.approx(acc[task]["random+vanilla"] - acc[task]["vanilla"])
    assert record["metrics"]["vanilla_learned_copy"] == (acc["copy"]["vanilla"] >= 90.0)
    assert record["passed"] == (record["metrics"]["vanilla_learned_copy"] and all(m >= -3.0 for m in margin.values()))
    for task, lrs in record["metrics"]["lr"].items():               # each model's lr is its best on validation
        for method, lr in lrs.items():
            val = record["metrics"]["lr_sweep_val_accuracy"][task][method]
            assert val[str(lr)] == max(val.values())
    assert all(0.0 < a < 1.0 for alphas in record["metrics"]["alpha_random_seed0"].values() for a in alphas)
