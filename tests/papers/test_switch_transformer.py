"""Switch Transformer (Fedus et al. 2021, arXiv:2101.03961): where the Switch layers go, the reduced
initialization, the presets, a loss that falls, the steps-to-target measure and the claims' quick runs."""

import math

import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.core import MoE
from archzoo.papers.switch_transformer import reduced_init, switch_feedforwards, switch_lm
from archzoo.papers.switch_transformer.models import SwitchEncoderDecoder, switch_base_8_parameter_difference
from archzoo.papers.switch_transformer.training import steps_to_reach


def test_every_other_block_is_a_switch_layer_and_a_token_visits_one_expert_of_the_dense_width():
    model = switch_lm(20, num_experts=4, dim=16, depth=4, heads=2, dim_head=8)
    ffs = [block.ff for block in model.transformer.blocks]
    assert [isinstance(ff, MoE) for ff in ffs] == [False, True, False, True]
    dense = ffs[0]
    assert ffs[1].k == 1    # each expert has the dense width: equal FLOPs/token
    assert [w.shape for w in ffs[1].experts.w_in] == [(dense.fc1.out_features, 16)] * 4
    assert switch_feedforwards(3, 2, sparse_step=1) and all(callable(f) for f in switch_feedforwards(3, 2, 1))


def test_reduced_init_draws_every_weight_matrix_with_std_sqrt_scale_over_fan_in():
    torch.manual_seed(0)
    model = reduced_init(switch_lm(20, num_experts=8, dim=64, depth=2, heads=4, dim_head=16, init_scale=1.0), 0.1)
    moe = model.transformer.blocks[1].ff
    experts = [torch.stack(list(moe.experts.w_in)), torch.stack(list(moe.experts.w_out))]
    for w, fan_in in [(experts[0], 64), (experts[1], 256), (moe.router.weight, 64),
                      (model.transformer.blocks[0].attn.to_q.weight, 64)]:
        expected = math.sqrt(0.1 / fan_in) * 0.8796                  # std of a normal truncated at 2 sigma
        assert abs(float(w.detach().std()) - expected) < 0.1 * expected
        assert float(w.detach().abs().max()) <= 2 * math.sqrt(0.1 / fan_in) + 1e-7


def test_the_dense_baseline_has_no_experts_and_the_switch_lm_more_parameters_at_equal_flops():
    dense, switch = switch_lm(20, None, dim=16, depth=2), switch_lm(20, 8, dim=16, depth=2)
    n = [sum(p.numel() for p in m.parameters()) for m in (dense, switch)]
    ffn = 2 * 16 * 64
    assert not any(isinstance(m, MoE) for m in dense.modules())
    assert n[1] - n[0] == 8 * ffn + 16 * 8 - (ffn + 64 + 16)          # 8 experts + router - one biased dense FFN


def test_switch_lm_small_is_registered_with_its_parameter_count():
    model = archzoo.create_model("switch_lm_small", vocab_size=100)
    assert sum(p.numel() for p in model.parameters()) == 679_524      # dim 64, 4 blocks, 2 with 8 experts
    assert model(torch.randint(0, 100, (2, 16))).shape == (2, 16, 100)


def test_a_switch_lm_loss_falls_on_a_fixed_batch(fixed_batch_losses):
    torch.manual_seed(0)
    model = switch_lm(12, num_experts=4, dim=16, depth=2, heads=2, dim_head=8, capacity_factor=1.25)
    x = torch.randint(0, 12, (4, 16))

    def loss():
        logits = model(x[:, :-1])
        moe = model.transformer.blocks[1].ff
        return F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()) + moe.aux_loss

    losses = fixed_batch_losses(loss, torch.optim.Adam(model.parameters(), 1e-2), 60)
    assert losses[-1] < 0.5 * losses[0]


def test_steps_to_reach_interpolates_between_evaluations():
    assert steps_to_reach([0, 10, 20], [3.0, 2.0, 1.0], 1.5) == 15.0
    assert steps_to_reach([0, 10], [3.0, 2.0], 1.0) is None


@pytest.mark.parametrize("name", ["faster_than_dense", "balancing_cuts_dropped_tokens"])
def test_quick_claims_run(quick_claim, name):
    record = quick_claim("switch_transformer", name)
    assert "passed" in record and record["metrics"]


def test_switch_base_8_has_hugging_faces_parameter_count_plus_the_counted_differences():
    with torch.device("meta"):                           # 619M parameters: shapes only
        model = archzoo.create_model("switch_base_8")
    assert sum(p.numel() for p in model.parameters()) == 619_339_008 + switch_base_8_parameter_difference()
    sparse = [isinstance(block.ff, MoE) for block in model.decoder.blocks]
    assert sparse == [i % 2 == 1 for i in range(12)] and \
        [w.shape for w in model.decoder.blocks[1].ff.experts.w_in] == [(3072, 768)] * 8


def test_the_encoder_decoder_decoder_is_causal():
    torch.manual_seed(0)
    model = SwitchEncoderDecoder(30, dim=16, depth=2, heads=2, dim_head=8, max_len=16, num_experts=2,
                                 capacity_factor=None).eval()
    src, tgt = torch.randint(0, 30, (1, 6)), torch.randint(0, 30, (1, 5))
    changed = tgt.clone()
    changed[0, 3] = (tgt[0, 3] + 1) % 30
    torch.testing.assert_close(model(src, tgt)[:, :3], model(src, changed)[:, :3])


@pytest.mark.reference
def test_hugging_faces_switch_base_8_has_619_339_008_parameters():
    modeling = pytest.importorskip("transformers.models.switch_transformers.modeling_switch_transformers")
    config = modeling.SwitchTransformersConfig(d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12,
                                               num_heads=12, d_kv=64, num_experts=8, num_sparse_encoder_layers=6,
                                               num_sparse_decoder_layers=6, vocab_size=32128)   # google/switch-base-8
    with torch.device("meta"):
        reference = modeling.SwitchTransformersForConditionalGeneration(config)
    assert sum(p.numel() for p in reference.parameters()) == 619_339_008
