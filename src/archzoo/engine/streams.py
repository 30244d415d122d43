"""Data streams: the batch of every step is a pure function of (seed, stream, step).

Training counts steps, not epochs. The global batch of a stream at step t is the slice
[t*B, (t+1)*B) of an endless sequence of epoch permutations, each drawn from a generator
seeded with (seed, stream, epoch); so a resumed run sees exactly the batches of an
uninterrupted one, two streams never share their order, and under DDP (`torchrun`) rank r
takes the r-th contiguous chunk of the same global batch.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset, default_collate


class StepSampler:
    """The indices of the global batch at each step, a pure function of (seed, stream, step).

    Epoch e is a permutation drawn from a generator seeded with (seed, e), or (seed, crc32(stream), e)
    for a named stream; the epochs are laid end to end and step t takes positions [t*B, (t+1)*B), so a
    batch may straddle two epochs and a dataset smaller than B still works.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, stream: str | None = None):
        if num_samples < 1:
            raise ValueError("the dataset is empty: expected at least 1 sample")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.entropy = [seed] if stream is None else [seed, zlib.crc32(stream.encode())]
        self._perms: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            seed = int(np.random.SeedSequence([*self.entropy, epoch]).generate_state(1, np.uint64)[0])
            self._perms[epoch] = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(seed))
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        pos = step * self.batch_size + torch.arange(self.batch_size)
        epochs = pos // self.num_samples
        self._perms = {e: p for e, p in self._perms.items() if e >= int(epochs[0])}   # forget past epochs
        return torch.cat([self.permutation(int(e))[pos[epochs == e] % self.num_samples] for e in epochs.unique()])


def gather(dataset: Dataset, indices: torch.Tensor):
    """The samples at `indices`, collated into a batch (a TensorDataset is indexed directly)."""
    if isinstance(dataset, TensorDataset):
        return tuple(t[indices] for t in dataset.tensors)
    getitems = getattr(dataset, "__getitems__", None)
    items = getitems(indices.tolist()) if getitems else [dataset[i] for i in indices.tolist()]
    return default_collate(items)


def to_device(batch, device: torch.device):
    """Move every tensor of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class Stream:
    """One named data stream of a run: its dataset, its per-process batch size and its sampler.

    The stream called `train` draws exactly the batches the single-stream engine always drew
    (seeded with `seed` alone); any other name mixes the name into the seed.
    """

    def __init__(self, name: str, dataset: Dataset, batch_size: int, seed: int, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size of stream {name!r} must be >= 1, got {batch_size}")
        self.name, self.dataset, self.batch_size = name, dataset, batch_size
        self.sampler = StepSampler(len(dataset), batch_size * world_size, seed, None if name == "train" else name)

    def batch(self, step: int, rank: int, device: torch.device):
        """This process's share of the global batch at `step`, on `device`."""
        indices = self.sampler.indices(step)[rank * self.batch_size:(rank + 1) * self.batch_size]
        return to_device(gather(self.dataset, indices), device)
