"""Tests run many tiny steps: one intra-op thread is far faster than two on a shared 2-core machine."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def fixed_batch_losses():
    """`run(loss_fn, optimizer, steps)`: `steps` optimizer steps on `loss_fn()` (one fixed batch); the losses."""

    def run(loss_fn, optimizer, steps: int) -> list[float]:
        losses = []
        for _ in range(steps):
            loss = loss_fn()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    return run
