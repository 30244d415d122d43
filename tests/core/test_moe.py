import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F

from archzoo.core import MoE, Transformer, expert_capacity, load_balancing_loss, route, router_z_loss


def dense_loop(moe: MoE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer written token by token: in each group, every first choice, then every second choice, takes the
    next free slot of its expert while there is one; a kept token adds gate x expert(x). Returns (y, kept)."""
    t, d = x.shape
    s = moe.group_size or t
    capacity = expert_capacity(s, moe.num_experts, moe.capacity_factor)
    probs = F.linear(x, moe.router.weight).softmax(-1)
    y, kept = torch.zeros_like(x), torch.zeros(t, moe.k, dtype=torch.bool)
    for g in range(t // s):
        used = [0] * moe.num_experts
        for j in range(moe.k):
            for i in range(g * s, (g + 1) * s):
                top = probs[i].topk(moe.k)
                e, gate = int(top.indices[j]), top.values[j] / (top.values.sum() if moe.k == 2 else 1)
                if used[e] < capacity:
                    used[e] += 1
                    kept[i, j] = True
                    w_in, w_out = moe.experts.w_in[e], moe.experts.w_out[e]
                    y[i] += gate * (torch.relu(x[i] @ w_in.T) @ w_out.T)
    return y, kept


@pytest.mark.parametrize("k, group_size", [(1, None), (1, 6), (2, None), (2, 6)])
def test_capacity_limited_dispatch_and_combine_equal_a_loop_over_experts_on_the_kept_tokens(k, group_size):
    torch.manual_seed(0)
    moe = MoE(5, num_experts=4, hidden_dim=7, k=k, capacity_factor=1.0, group_size=group_size).double()
    x = torch.randn(2, 12, 5, dtype=torch.float64) * 3               # large logits: uneven load, tokens dropped
    y_ref, kept = dense_loop(moe, x.view(-1, 5))
    torch.testing.assert_close(moe(x), y_ref.view(2, 12, 5))
    assert 0 < kept.sum() < kept.numel()                              # some choices were dropped, some kept


def test_dropped_tokens_give_zero_output_and_pass_through_the_residual():
    torch.manual_seed(0)
    moe = MoE(4, num_experts=2, k=1, capacity_factor=0.5).double()   # 2 of 8 tokens per expert at most
    x = torch.randn(8, 4, dtype=torch.float64)
    y = moe(x)
    _, kept = dense_loop(moe, x)
    dropped = ~kept[:, 0]
    assert dropped.sum() >= 4 and torch.equal(y[dropped], torch.zeros_like(y[dropped]))
    assert (y[~dropped].abs().sum(-1) > 0).all()
    assert float(moe.routing_stats["dropped"]) == dropped.double().mean()
    block = Transformer(4, depth=1, heads=1, dim_head=4, feedforward=lambda d: moe).blocks[0].double()
    h = x.view(1, 8, 4)
    after_attention = h + block.attn(block.norm1(h))
    torch.testing.assert_close(block(h)[0, dropped], after_attention[0, dropped])   # the residual alone


def test_load_balancing_loss_is_the_switch_formula_on_a_hand_made_routing():
    probs = torch.tensor([[[0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.9, 0.1]]])    # first choices 0, 0, 1, 0
    f, p = torch.tensor([3 / 4, 1 / 4]), torch.tensor([2.4 / 4, 1.6 / 4])         # Eq. 5 and Eq. 6
    loss = load_balancing_loss(probs, probs.argmax(-1))
    torch.testing.assert_close(loss, 2 * (f * p).sum())                          # Eq. 4 with alpha = 1: 1.1
    counts, means = torch.tensor([3.0, 1.0]), probs[0].mean(0)                   # GShard Alg. 1: l_aux
    torch.testing.assert_close(loss / 2 ** 2, (counts / 4 * means).sum() / 2)
    uniform = torch.full((3, 8, 4), 0.25)
    assert float(load_balancing_loss(uniform, torch.arange(8).remainder(4).expand(3, 8))) == pytest.approx(1.0)


def test_the_layer_reports_the_weighted_balance_and_z_losses_as_aux_loss():
    torch.manual_seed(0)
    moe = MoE(4, num_experts=3, k=1, group_size=5, balance_weight=0.01, z_weight=0.001)
    x = torch.randn(10, 4)
    moe(x)
    logits = (x @ moe.router.weight.T).view(2, 5, 3)
    lse = torch.logsumexp(logits, -1)
    expected = 0.01 * load_balancing_loss(logits.softmax(-1), logits.argmax(-1)) + 0.001 * (lse ** 2).mean()
    torch.testing.assert_close(moe.aux_loss, expected)
    torch.testing.assert_close(router_z_loss(torch.zeros(1, 2, 2)), torch.tensor(math.log(2) ** 2))


def test_random_routing_keeps_the_second_expert_with_probability_twice_its_gate():
    logits = torch.tensor([2.0, 2 + math.log(3 / 7), -9.0]).log_softmax(-1).expand(1, 20000, 3)  # g2 = 0.3 after
    r = route(logits, k=2, capacity=20000, random_routing=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(r.gate[0, 0], torch.tensor([0.7, 0.3]), atol=1e-3, rtol=0)
    assert r.kept[..., 0].all()
    assert abs(float(r.kept[..., 1].float().mean()) - 0.6) < 0.02
    assert route(logits, k=2, capacity=20000).kept.all()              # without it every second choice is used


def test_the_router_runs_in_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    moe = MoE(8, num_experts=4)
    x = torch.randn(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = moe.route(x)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits.view(16, 4), x @ moe.router.weight.T)


def test_a_transformer_takes_one_feedforward_per_block():
    t = Transformer(8, depth=2, heads=2, dim_head=4, feedforward=[lambda d: MoE(d, num_experts=2), "mlp"])
    assert isinstance(t.blocks[0].ff, MoE) and not isinstance(t.blocks[1].ff, MoE)
    t(torch.randn(2, 3, 8)).sum().backward()
    assert t.blocks[0].ff.aux_loss is not None and t.blocks[0].ff.router.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"one per block \(2\), got 3"):
        Transformer(8, depth=2, feedforward=["mlp"] * 3)


@pytest.mark.parametrize("kwargs, match", [(dict(k=3), "k must be 1 or 2"), (dict(capacity_factor=0), "> 0"),
                                           (dict(group_size=5), "groups of group_size=5")])
def test_bad_configurations_and_inputs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MoE(4, num_experts=4, **kwargs)(torch.randn(8, 4))


def test_a_wrong_feature_size_names_the_expected_one():
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., D=4\), got \(2, 5\)"):
        MoE(4, num_experts=2)(torch.randn(2, 5))


# ------------------------------------------------------------------ expert parallelism on 2 gloo processes

W, E, D, T = 2, 4, 6, 10            # processes, experts, features, tokens per process


def _layers(k: int) -> tuple[MoE, list[torch.Tensor], list[torch.Tensor]]:
    """The single-process layer (one group per process's tokens), the tokens and the loss weights of each rank."""
    torch.manual_seed(0)
    moe = MoE(D, num_experts=E, hidden_dim=5, k=k, capacity_factor=1.0, group_size=T).double()
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(T, D, dtype=torch.float64, generator=g) * 3 for _ in range(W)]
    cs = [torch.randn(T, D, dtype=torch.float64, generator=g) for _ in range(W)]
    return moe, xs, cs


def _expert_parallel_worker(rank: int, port: int) -> None:
    from archzoo.engine import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(W), RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init_distributed("gloo")
    try:
        for k in (1, 2):
            _check_expert_parallel_layer(rank, k, distributed)
    finally:
        distributed.cleanup()


def _check_expert_parallel_layer(rank: int, k: int, distributed) -> None:
    single, xs, cs = _layers(k)
    moe = MoE(D, num_experts=E, hidden_dim=5, k=k, capacity_factor=1.0, exchange=distributed).double()
    local = slice(rank * E // W, (rank + 1) * E // W)
    moe.load_shard(single)
    assert all(getattr(p, "expert_parallel", False) for p in moe.experts.parameters())
    x = xs[rank].clone().requires_grad_()
    y = moe(x)
    ((y * cs[rank]).sum() + moe.aux_loss).backward()                 # this process's loss
    torch.distributed.all_reduce(moe.router.weight.grad)             # the replicated router: summed over ranks

    x_all = torch.cat(xs).requires_grad_()
    y_all = single(x_all)
    ((y_all * torch.cat(cs)).sum() + W * single.aux_loss).backward()  # aux_loss is the mean over the W groups
    mine = slice(rank * T, (rank + 1) * T)
    torch.testing.assert_close(y, y_all[mine], rtol=0, atol=1e-5)
    torch.testing.assert_close(x.grad, x_all.grad[mine], rtol=0, atol=1e-5)
    torch.testing.assert_close(moe.router.weight.grad, single.router.weight.grad, rtol=0, atol=1e-5)
    for ours, full in ((moe.experts.w_in, single.experts.w_in[local]),
                       (moe.experts.w_out, single.experts.w_out[local])):
        torch.testing.assert_close(torch.stack([w.grad for w in ours]), torch.stack([w.grad for w in full]),
                                   rtol=0, atol=1e-5)
    assert moe.experts.w_in[0].grad.abs().sum() > 0 and float(single.routing_stats["dropped"]) > 0


def test_two_gloo_processes_holding_half_the_experts_each_equal_one_process_top1_and_top2():
    """Forked (not spawned) workers: nothing to re-import, so the test takes a few seconds. The assertions are in
    `_expert_parallel_worker`: a failing one in either process raises here (ProcessRaisedException)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.start_processes(_expert_parallel_worker, args=(port,), nprocs=W, start_method="fork")


def _expert_parallel_net(exchange=None) -> torch.nn.Module:
    """Linear -> MoE (4 experts, no dropping, no aux loss: every token's output is independent of the others') ->
    Linear; with an exchange, this process keeps its slice of the same experts."""
    torch.manual_seed(0)
    full = torch.nn.Sequential(torch.nn.Linear(4, D), MoE(D, E, hidden_dim=5, capacity_factor=None, balance_weight=0),
                               torch.nn.Linear(D, 1))
    if exchange is None:
        return full
    moe = MoE(D, E, hidden_dim=5, capacity_factor=None, balance_weight=0, exchange=exchange)
    moe.load_shard(full[1])
    return torch.nn.Sequential(full[0], moe, full[2])


def _train_net(net: torch.nn.Module, batch_size: int) -> None:
    from torch.utils.data import TensorDataset

    from archzoo.engine.train import train

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g))
    train(net, data, steps=3, batch_size=batch_size, lr=0.5, optimizer="sgd", schedule="constant", progress=False,
          loss_fn=lambda model, batch: F.mse_loss(model(batch[0]), batch[1]))


def _trainer_worker(rank: int, port: int, out: str) -> None:
    from archzoo.engine import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(W), RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init_distributed("gloo")
    try:
        net = _expert_parallel_net(distributed)
        _train_net(net, 8 // W)
        torch.save(net.state_dict(), f"{out}/rank{rank}.pt")
    finally:
        distributed.cleanup()


def test_the_trainer_under_two_processes_with_sharded_experts_trains_as_one_process_with_all(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.start_processes(_trainer_worker, args=(port, str(tmp_path)), nprocs=W, start_method="fork")
    single = _expert_parallel_net()
    before = {k: v.clone() for k, v in single.state_dict().items()}
    _train_net(single, 8)
    after = single.state_dict()
    for rank in range(W):
        shard = torch.load(tmp_path / f"rank{rank}.pt")
        for key, value in shard.items():
            if key.startswith("1.experts"):                              # local expert i is expert rank * E / W + i
                name, i = key.rsplit(".", 1)
                key = f"{name}.{rank * E // W + int(i)}"
            torch.testing.assert_close(value, after[key], rtol=0, atol=1e-5)
    assert not torch.allclose(after["1.experts.w_in.0"], before["1.experts.w_in.0"])   # the experts did train


@pytest.mark.reference
def test_a_switch_layer_equals_hugging_face_switch_transformers_sparse_mlp():
    modeling = pytest.importorskip("transformers.models.switch_transformers.modeling_switch_transformers")
    config = modeling.SwitchTransformersConfig(d_model=8, d_ff=12, num_experts=4, expert_capacity=3,
                                               dropout_rate=0.0, router_jitter_noise=0.0)
    torch.manual_seed(0)
    reference = modeling.SwitchTransformersSparseMLP(config).eval()
    ours = MoE(8, num_experts=4, hidden_dim=12, k=1, capacity_factor=1.0, group_size=12).eval()  # capacity 3
    with torch.no_grad():
        ours.router.weight.copy_(reference.router.classifier.weight)
        for i in range(4):
            ours.experts.w_in[i].copy_(reference.experts[f"expert_{i}"].wi.weight)
            ours.experts.w_out[i].copy_(reference.experts[f"expert_{i}"].wo.weight)
    x = torch.randn(3, 12, 8) * 4                                    # 3 sequences = 3 groups of 12 tokens
    y_ref = reference(x)
    y_ref = y_ref[0] if isinstance(y_ref, tuple) else y_ref
    torch.testing.assert_close(ours(x), y_ref, rtol=1e-5, atol=1e-5)
    assert float(ours.routing_stats["dropped"]) > 0                   # the capacity bound was exercised


def test_load_shard_copies_the_router_and_experts_and_names_a_mismatch():
    full, shard = MoE(8, 4, hidden_dim=5), MoE(8, 4, hidden_dim=5)
    shard.load_shard(full)
    for a, b in zip(full.state_dict().values(), shard.state_dict().values()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    with pytest.raises(ValueError, match="expected a one-process MoE of 4 experts on dim 8, got 2 experts"):
        shard.load_shard(MoE(8, 2, hidden_dim=5))
