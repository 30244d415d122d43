"""Tests run many tiny steps: one intra-op thread is far faster than two on a shared 2-core machine."""

import torch

torch.set_num_threads(1)
