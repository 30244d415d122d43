"""Expert parallelism checked against one process: W gloo processes on this machine, each holding E / W experts
of a GShard layer and its own group of tokens, against one process holding every expert and every group
(GShard Sec. 3.2: the experts are sharded over devices, the tokens of each group travel to their experts by
all-to-all and come back).

    errors = expert_parallel_errors(seed=0, k=2)      # relative errors: {"outputs": ..., "router_grad": ..., ...}
    expert_parallel_step_ms(world=2, tokens=2048)      # forward+backward times of the sharded layer (the bench)
    torchrun --nproc_per_node 2 -m archzoo.papers.gshard                # the same check under torchrun
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ...core import MoE
from ...engine import distributed


def _layer(dim: int, num_experts: int, k: int, group_size: int, seed: int, exchange=None) -> MoE:
    torch.manual_seed(seed)
    return MoE(dim, num_experts, hidden_dim=2 * dim, k=k, capacity_factor=1.0, group_size=group_size,
               exchange=exchange)


def _tokens(world: int, tokens: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(world, tokens, dim, generator=g) * 2, torch.randn(world, tokens, dim, generator=g)


def _worker(rank: int, world: int, port: int, out: str, cfg: dict, task) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init_distributed("gloo")
    try:
        Path(out, f"rank{rank}.json").write_text(json.dumps(task(cfg)))
    finally:
        distributed.cleanup()


def _run_processes(world: int, cfg: dict, task) -> list[dict]:
    """`task(cfg)` in `world` forked processes joined over gloo on the loopback address: each one's result."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        torch.multiprocessing.start_processes(_worker, args=(world, port, out, cfg, task), nprocs=world,
                                              start_method="fork")
        return [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world)]


def _expert_grads(weights) -> torch.Tensor:
    return torch.cat([w.grad.flatten() for w in weights])


def compare_with_one_process(cfg: dict) -> dict:
    """This process's relative errors against the single-process computation, which every process repeats."""
    rank, world = distributed.rank(), distributed.world_size()
    dim, e, k, t, seed = cfg["dim"], cfg["num_experts"], cfg["k"], cfg["tokens"], cfg["seed"]
    single = _layer(dim, e, k, t, seed)                               # one group of t tokens per process
    moe = _layer(dim, e, k, t, seed, exchange=distributed)
    mine = slice(rank * e // world, (rank + 1) * e // world)
    moe.load_shard(single)
    xs, cs = _tokens(world, t, dim, seed)
    # `.backward()` directly, not the Trainer: this check compares the gradients of the two paths, it trains nothing
    x = xs[rank].clone().requires_grad_()
    y = moe(x)
    ((y * cs[rank]).sum() + moe.aux_loss).backward()
    torch.distributed.all_reduce(moe.router.weight.grad)              # the router is replicated: sum its gradients
    x_all = xs.flatten(0, 1).requires_grad_()
    y_all = single(x_all)
    ((y_all * cs.flatten(0, 1)).sum() + world * single.aux_loss).backward()   # aux_loss: mean over groups
    rows = slice(rank * t, (rank + 1) * t)
    pairs = {"outputs": (y, y_all[rows]), "input_grads": (x.grad, x_all.grad[rows]),
             "router_grad": (moe.router.weight.grad, single.router.weight.grad),
             "expert_grads": (_expert_grads(moe.experts.parameters()),
                              _expert_grads([*single.experts.w_in[mine], *single.experts.w_out[mine]]))}
    errors = {name: float((a.detach() - b.detach()).abs().max() / b.detach().abs().max())    # relative
              for name, (a, b) in pairs.items()}
    errors["dropped"] = float(single.routing_stats["dropped"])
    return errors


def expert_parallel_errors(seed: int = 0, k: int = 2, world: int = 2, num_experts: int = 4, dim: int = 16,
                           tokens: int = 32) -> dict:
    """max |W processes - one process| / max |one process| of the outputs, input gradients, router and expert
    gradients (worst over ranks), float32, and the fraction of tokens dropped; the processes are forked and
    exchange over gloo on the loopback address."""
    cfg = dict(num_experts=num_experts, dim=dim, k=k, tokens=tokens, seed=seed)
    per_rank = _run_processes(world, cfg, compare_with_one_process)
    return {key: max(r[key] for r in per_rank) for key in per_rank[0]}


def time_sharded_steps(cfg: dict) -> dict:
    """Milliseconds of each forward+backward step of this process's shard, its own `tokens` tokens in one group;
    a step ends when the slowest process ends it (the maximum over processes)."""
    torch.manual_seed(0)
    layer = MoE(cfg["dim"], cfg["num_experts"], k=cfg["k"], capacity_factor=1.0, group_size=cfg["tokens"],
                exchange=distributed)
    x = torch.randn(cfg["tokens"], cfg["dim"], generator=torch.Generator().manual_seed(distributed.rank()))
    times = []
    for i in range(cfg["warmup"] + cfg["repeats"]):
        layer.zero_grad(set_to_none=True)
        distributed.barrier()
        start = time.perf_counter()
        (layer(x).sum() + layer.aux_loss).backward()               # times the backward pass, trains nothing
        elapsed = torch.tensor((time.perf_counter() - start) * 1e3)
        torch.distributed.all_reduce(elapsed, op=torch.distributed.ReduceOp.MAX)
        if i >= cfg["warmup"]:
            times.append(float(elapsed))
    return {"times_ms": times}


def expert_parallel_step_ms(world: int = 2, num_experts: int = 8, dim: int = 256, k: int = 2, tokens: int = 2048,
                            repeats: int = 10, warmup: int = 3) -> float:
    """Median milliseconds of a forward+backward step of a top-k layer (experts of width 4 dim, capacity factor 1.0)
    sharded over `world` forked processes of one thread each, every process routing its own group of `tokens`
    tokens (`world * tokens` in all)."""
    cfg = dict(num_experts=num_experts, dim=dim, k=k, tokens=tokens, repeats=repeats, warmup=warmup)
    return statistics.median(_run_processes(world, cfg, time_sharded_steps)[0]["times_ms"])
