"""Permuted-task benchmarks (PermutedMNIST, Goodfellow et al. 2013; SupSup Sec. 4): task i is the same image
classification problem with the pixels of every image shuffled by a fixed permutation pi_i, drawn once from the
seed. The labels do not change, so all tasks share one 10-way output and only the input tells them apart.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ...data import ImageData
from ...data.images import first


def permute_pixels(x: Tensor, permutation: Tensor) -> Tensor:
    """Images (B, C, H, W) with their C*H*W values reordered by `permutation` (a permutation of C*H*W)."""
    if permutation.shape != (x[0].numel(),):
        raise ValueError(f"permutation: expected shape ({x[0].numel()},) for images {tuple(x.shape[1:])}, got "
                         f"{tuple(permutation.shape)}")
    return x.flatten(1)[:, permutation].view_as(x)


class PermutedTasks:
    """`num_tasks` permuted versions of `data` (an ImageData), task i with permutation pi_i from
    `np.random.default_rng([seed, i])`, so a task's permutation does not depend on how many tasks there are.
    `task(i)` builds task i's ImageData on demand (train set permuted whole, test set its first `n_test` images),
    so that only the task being trained occupies memory.
    """

    def __init__(self, data: ImageData, num_tasks: int, seed: int = 0, n_test: int | None = None):
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.data, self.num_tasks, self.seed = data, num_tasks, seed
        self.base_test = data.test if n_test is None else first(data.test, n_test)
        size = data.train.tensors[0][0].numel()
        self.permutations = [torch.from_numpy(np.random.default_rng([seed, i]).permutation(size))
                             for i in range(num_tasks)]

    def __len__(self) -> int:
        return self.num_tasks

    def _check(self, task: int) -> None:
        if not 0 <= task < self.num_tasks:
            raise ValueError(f"task must be in 0..{self.num_tasks - 1}, got {task}")

    def test(self, task: int) -> TensorDataset:
        """Task `task`'s test set: the (first `n_test`) test images, permuted."""
        self._check(task)
        x, y = self.base_test.tensors
        return TensorDataset(permute_pixels(x, self.permutations[task]), y)

    def task(self, task: int) -> ImageData:
        """Task `task` as an ImageData named `permuted-<name>/<task>`."""
        self._check(task)
        x, y = self.data.train.tensors
        return replace(self.data, name=f"permuted-{self.data.name}/{task}",
                       train=TensorDataset(permute_pixels(x, self.permutations[task]), y), test=self.test(task))
