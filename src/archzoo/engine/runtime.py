"""The process's runtime policy, decided in one place: seeds, the device, intra-op threads.

    seed_everything(0)                        # Python, NumPy and torch (CPU and every GPU)
    device = resolve_device("auto")           # cuda, else mps, else cpu
    device = process_device(device)           # joins torchrun's process group; each rank takes its own GPU
    with num_threads(1): ...                  # tiny sequential work runs fastest on one thread

Nothing here imports another engine module but `distributed`, so the claim runner,
the Trainer and the CLI all import it without circles.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch

from . import distributed

DEVICES = ("auto", "cpu", "cuda", "mps")


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto`: cuda if available, else mps, else cpu; or `cpu`, `cuda`, `cuda:<i>`, `mps` as given."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu, cuda or mps, got {device!r}")
    return torch.device(device)


def process_device(device) -> torch.device:
    """The device this process trains on: joins torchrun's process group when WORLD_SIZE > 1 (gloo on
    CPU, nccl on CUDA) and gives each rank the GPU of its LOCAL_RANK when `device` names no index."""
    device = torch.device(device)
    distributed.init_distributed("nccl" if device.type == "cuda" else "gloo")
    if distributed.world_size() > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", distributed.local_rank())
    return device


@contextmanager
def num_threads(n: int):
    """Run the block with `n` intra-op threads, then restore the previous number."""
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
