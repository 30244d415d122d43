"""Distributed data parallelism, launched by `torchrun`.

    torchrun --nproc_per_node 2 my_script.py      # my_script calls engine.train.train(...)

`torchrun` sets WORLD_SIZE, RANK and LOCAL_RANK (and MASTER_ADDR/PORT); when
WORLD_SIZE > 1, `init_distributed` joins the process group (gloo on CPU, nccl on
CUDA). Every helper here also works in a plain single process, where it is a
no-op, so the training loop calls them unconditionally.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment; True when running distributed.

    `backend`: "gloo" (CPU tensors) or "nccl" (CUDA tensors; each process takes the GPU of its
    LOCAL_RANK); None picks nccl when CUDA is available. Idempotent: a second call (or a group
    the caller already initialised) changes nothing.
    """
    if _active():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend)
    return True


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if _active() else 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if _active() else 0


def local_rank() -> int:
    """This process's rank on its machine, which picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0, the only process that writes logs and checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if _active():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over all processes (the tensor itself in a single process)."""
    if not _active():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / world_size()


def cleanup() -> None:
    """Leave the process group (no-op when not distributed)."""
    if _active():
        dist.destroy_process_group()
