"""The "remember the key" task of Expire-Span's Sec. 5.1, generated: one key, a long corridor of noise, a query.

    x = [noise ... KEY ... noise, noise, ..., noise, QUERY]       y = [-100, ..., -100, key]

The key (one of `num_keys` symbols) sits at a random position among the first `key_window` tokens; every other
token but the last is noise drawn uniformly from `num_noise` symbols that carry no information; at the last
position (the query) the model must name the key, `length - key_window` or more steps later. Ids: 0 unused,
keys 1..num_keys, noise after them, the query last; classes are the keys (0..num_keys-1).
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from ...data.tasks import IGNORE_INDEX, SequenceTask


def make_remember_key(n: int, length: int, seed: int = 0, num_keys: int = 8, num_noise: int = 16,
                      key_window: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (n, length) token ids, y (n, length) targets: the key's class at the last position, -100 elsewhere)."""
    if length < key_window + 1:
        raise ValueError(f"length must be >= key_window + 1 = {key_window + 1}, got {length}")
    g = torch.Generator().manual_seed(seed)
    x = 1 + num_keys + torch.randint(0, num_noise, (n, length), generator=g)     # noise
    key = torch.randint(0, num_keys, (n,), generator=g)
    where = torch.randint(0, key_window, (n,), generator=g)
    x[torch.arange(n), where] = 1 + key
    x[:, -1] = 1 + num_keys + num_noise                                           # the query
    y = torch.full((n, length), IGNORE_INDEX)
    y[:, -1] = key
    return x, y


def remember_key_task(length: int, n_train: int, n_test: int, seed: int = 0, **kw) -> SequenceTask:
    """Train and test sets of `make_remember_key` (different seeds) as a per-token `SequenceTask`."""
    train = TensorDataset(*make_remember_key(n_train, length, seed=2 * seed, **kw))
    test = TensorDataset(*make_remember_key(n_test, length, seed=2 * seed + 1, **kw))
    num_keys, num_noise = kw.get("num_keys", 8), kw.get("num_noise", 16)
    return SequenceTask("remember_key", train, test, vocab_size=num_keys + num_noise + 2, num_classes=num_keys,
                        per_token=True)
