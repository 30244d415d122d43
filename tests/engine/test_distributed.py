import json
import os
import runpy
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from archzoo.engine import distributed

BATCH = 16

# Run as a script by torchrun (2 processes, per-process batch BATCH/2), and in-process (1 process, batch BATCH).
SCRIPT = '''
import sys

import torch
from torch import nn
from torch.utils.data import TensorDataset

from archzoo.engine import distributed
from archzoo.engine.train import train


def main(out_dir, batch_size):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g))
    torch.manual_seed(distributed.rank())      # different inits per rank: DDP must broadcast rank 0's
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    train(model, data, steps=4, batch_size=batch_size, lr=0.1, optimizer="sgd", schedule="constant",
          checkpoint_dir=out_dir, progress=False, log_path=f"{out_dir}/log.jsonl")
    return distributed.world_size()


if __name__ == "__main__":
    assert main(sys.argv[1], int(sys.argv[2])) == 2
    distributed.cleanup()
'''


# Expert parallelism on 2 processes: E experts, E_LOCAL on each rank; every rank routes its own tokens to experts on
# both ranks with all_to_all, applies them, sends the outputs back with all_to_all_reverse and backpropagates its
# loss. Each rank checks outputs and gradients against the single-process computation over both ranks' tokens.
EXPERT_SCRIPT = '''
import json
import sys
from pathlib import Path

import torch

from archzoo.engine import distributed

W, E_LOCAL, D, OUT = 2, 2, 5, 3
E = W * E_LOCAL


def tokens(r):
    g = torch.Generator().manual_seed(100 + r)
    x = torch.randn(9 + 4 * r, D, dtype=torch.float64, generator=g)
    ids = torch.randint(0, E, (len(x),), generator=g)
    if r == 1:
        ids[ids == 1] = 0                                  # rank 1 sends nothing to expert 1: an empty bucket
    return x.requires_grad_(), ids, torch.randn(len(x), OUT, dtype=torch.float64, generator=g)


def expert(w, x):                                          # w (D, OUT), x (n, D) -> (n, OUT)
    return torch.tanh(x @ w)


def main():
    assert distributed.init_distributed("gloo")
    group = distributed.create_group("experts")
    r = distributed.rank(group)
    weights = torch.randn(E, D, OUT, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    local = weights[r * E_LOCAL:(r + 1) * E_LOCAL].clone().requires_grad_()

    x, ids, c = tokens(r)
    order = ids.argsort(stable=True)                       # sorted by expert, hence by destination rank
    counts = torch.bincount(ids, minlength=E).view(W, E_LOCAL)
    received, received_counts = distributed.all_to_all(x[order], counts, group)
    chunks = received.split(received_counts.flatten().tolist())            # source rank, then local expert
    out = torch.cat([expert(local[j % E_LOCAL], chunk) for j, chunk in enumerate(chunks)])
    y = distributed.all_to_all_reverse(out, received_counts, counts, group)[order.argsort()]
    (y * c).sum().backward()

    ref = [tokens(s) for s in range(W)]                    # one process, every token, every expert
    weights.requires_grad_()
    y_ref = [torch.tanh(torch.einsum("nd,ndo->no", xs, weights[i])) for xs, i, _ in ref]
    sum((yr * cs).sum() for yr, (_, _, cs) in zip(y_ref, ref)).backward()

    expected_counts = torch.stack([torch.bincount(i, minlength=E).view(W, E_LOCAL)[r] for _, i, _ in ref])
    assert torch.equal(received_counts, expected_counts), (received_counts, expected_counts)
    torch.testing.assert_close(y, y_ref[r], rtol=0, atol=1e-6)
    torch.testing.assert_close(x.grad, ref[r][0].grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(local.grad, weights.grad[r * E_LOCAL:(r + 1) * E_LOCAL], rtol=0, atol=1e-6)
    assert local.grad.abs().sum() > 0
    errors = {"outputs": float((y - y_ref[r]).abs().max()), "input_grads": float((x.grad - ref[r][0].grad).abs().max()),
              "expert_grads": float((local.grad - weights.grad[r * E_LOCAL:(r + 1) * E_LOCAL]).abs().max()),
              "tokens_received": len(received)}
    Path(sys.argv[1], f"rank{r}.json").write_text(json.dumps(errors))          # read back by the test
    distributed.cleanup()


if __name__ == "__main__":
    main()
'''


def test_helpers_are_single_process_no_ops():
    assert not distributed.init_distributed()
    assert (distributed.world_size(), distributed.rank(), distributed.is_main_process()) == (1, 0, True)
    distributed.barrier()
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.all_reduce_mean(t), t)


def test_single_process_groups_and_exchanges_are_the_identity():
    assert distributed.create_group("experts", [0]) is None and distributed.get_group("experts") is None
    with pytest.raises(ValueError, match="already exists"):
        distributed.create_group("experts")
    distributed.cleanup()
    with pytest.raises(ValueError, match="no process group 'experts'"):
        distributed.get_group("experts")
    with pytest.raises(ValueError, match="ranks"):
        distributed.create_group("pair", [0, 1])
    x = torch.randn(5, 3, requires_grad=True)
    received, counts = distributed.all_to_all(x, torch.tensor([5]))
    assert received is x and counts.tolist() == [5]
    assert distributed.all_to_all_reverse(received * 2, counts, counts).tolist() == (x * 2).tolist()


@pytest.mark.parametrize("counts, match", [(torch.tensor([2, 3]), r"shape \(1,\)"), (torch.tensor([4]), "sum to"),
                                           (torch.tensor([5.0]), "integer"), (torch.tensor([[6, -1]]), ">= 0")])
def test_all_to_all_rejects_counts_that_do_not_describe_the_tokens(counts, match):
    with pytest.raises(ValueError, match=match):
        distributed.all_to_all(torch.randn(5, 3), counts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script, args, log_dir, nprocs=2, timeout=120) -> None:
    """Start `nprocs` processes with the environment torchrun would give them, and wait for all
    (a rank that fails stops the others instead of leaving them waiting for it)."""
    common = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(nprocs),
                  OMP_NUM_THREADS="1")
    logs = [log_dir / f"rank{r}.log" for r in range(nprocs)]
    outs = [open(log, "w") for log in logs]
    procs = [subprocess.Popen([sys.executable, str(script), *args], env=dict(common, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=outs[r], stderr=subprocess.STDOUT) for r in range(nprocs)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = [p.poll() for p in procs]
        if None not in codes or any(codes):
            break
        time.sleep(0.1)
    for p, out in zip(procs, outs):
        p.kill()
        p.wait()
        out.close()
    failed = [r for r, p in enumerate(procs) if p.returncode != 0]
    assert not failed, "\n".join(f"rank {r} exited with {procs[r].returncode}:\n{logs[r].read_text()[-2000:]}"
                                  for r in failed)


@pytest.mark.slow
def test_two_gloo_processes_with_half_batches_match_one_process_with_the_whole_batch(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    launch(script, [str(tmp_path / "ddp"), str(BATCH // 2)], log_dir=tmp_path)

    assert runpy.run_path(str(script))["main"](str(tmp_path / "single"), BATCH) == 1
    ddp = load_file(tmp_path / "ddp" / "last" / "model.safetensors")
    single = load_file(tmp_path / "single" / "last" / "model.safetensors")
    assert ddp.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=0, atol=1e-5)
    assert len((tmp_path / "ddp" / "log.jsonl").read_text().splitlines()) == 4      # rank 0 alone wrote it


@pytest.mark.slow
def test_expert_exchange_on_two_gloo_processes_matches_one_process_in_outputs_and_gradients(tmp_path):
    script = tmp_path / "expert_script.py"
    script.write_text(EXPERT_SCRIPT)
    launch(script, [str(tmp_path)], log_dir=tmp_path)
    errors = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(e["outputs"] <= 1e-6 and e["input_grads"] <= 1e-6 and e["expert_grads"] <= 1e-6 for e in errors), errors
    assert all(e["tokens_received"] > 0 for e in errors)                     # each rank served some tokens
