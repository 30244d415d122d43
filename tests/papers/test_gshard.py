"""GShard (Lepikhin et al. 2020, arXiv:2006.16668): the top-2 layers' placement and configuration, capacity 2S / E,
groups, the sharded layer against one process, the preset and the claims' quick runs."""

import pytest
import torch

import archzoo
from archzoo.core import MoE, expert_capacity
from archzoo.papers.gshard import expert_parallel_errors, gshard_lm
from archzoo.papers.gshard.claims import imbalance


def test_every_other_block_is_a_top2_layer_with_random_routing_groups_and_capacity_2s_over_e():
    model = gshard_lm(20, num_experts=4, dim=16, depth=4, heads=2, dim_head=8, group_size=32)
    moes = [block.ff for block in model.transformer.blocks]
    assert [isinstance(ff, MoE) for ff in moes] == [False, True, False, True]
    moe = moes[1]
    assert (moe.k, moe.random_routing, moe.group_size) == (2, True, 32)
    assert expert_capacity(moe.group_size, moe.num_experts, moe.capacity_factor) == 2 * 32 // 4


def test_groups_are_routed_independently():
    torch.manual_seed(0)
    moe = MoE(8, num_experts=4, k=2, capacity_factor=1.0, group_size=16).eval()
    a, b = torch.randn(16, 8), torch.randn(16, 8)
    together = moe(torch.cat([a, b]))
    torch.testing.assert_close(together, torch.cat([moe(a), moe(b)]))


def test_two_forked_gloo_processes_give_the_outputs_and_gradients_of_one():
    errors = expert_parallel_errors(seed=0, k=2)
    assert max(errors[key] for key in ("outputs", "input_grads", "router_grad", "expert_grads")) <= 1e-5
    assert errors["dropped"] > 0                                       # capacity 1.0: some tokens overflow


def test_imbalance_is_one_when_balanced_and_e_when_one_expert_takes_all():
    assert imbalance([5, 5, 5, 5]) == 1.0 and imbalance([20, 0, 0, 0]) == 4.0


def test_gshard_lm_small_is_registered_with_its_parameter_count():
    model = archzoo.create_model("gshard_lm_small", vocab_size=100)
    assert sum(p.numel() for p in model.parameters()) == 679_524      # the Switch LM's size: k changes only FLOPs
    assert model(torch.randint(0, 100, (2, 16))).shape == (2, 16, 100)


@pytest.mark.parametrize("name", ["balanced_load", "top2_vs_top1", "parallel_equals_single"])
def test_quick_claims_run(quick_claim, name):
    record = quick_claim("gshard", name)
    assert "passed" in record and record["metrics"]


def test_the_expert_parallel_bench_times_one_process_and_the_sharded_layer():
    from archzoo.engine.bench.family import BenchOptions
    from archzoo.papers.gshard.bench import bench_expert_parallel

    table = bench_expert_parallel(BenchOptions(quick=True, device=torch.device("cpu"), repeats=1, warmup=0))
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| 1 process") or
            line.startswith("| 2 processes")]
    assert [r[0].strip() for r in rows] == ["1 process, all experts", "2 processes, 2 experts each"]
    assert all(float(r[2]) > 0 for r in rows) and float(rows[1][4]) > 0      # times, and the speedup
