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


def test_helpers_are_single_process_no_ops():
    assert not distributed.init_distributed()
    assert (distributed.world_size(), distributed.rank(), distributed.is_main_process()) == (1, 0, True)
    distributed.barrier()
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.all_reduce_mean(t), t)


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
