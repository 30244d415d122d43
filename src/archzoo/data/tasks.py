"""Generated long-range sequence tasks: copy, duplication, associative recall, ListOps and retrieval.

Each `make_<task>(n, length, seed, ...)` returns numpy int64 arrays `(x, y)`: `x` is `(n, length)`
token ids, `y` is `(n,)` class labels or `(n, length)` per-token targets where positions that carry
no loss hold `IGNORE_INDEX` (-100, PyTorch's default for cross-entropy). Per-token targets are
aligned with the input: `y[t]` is what the output at position `t` must predict. Token 0 is the
padding/blank token in every task. Generation is seeded (`numpy.random.default_rng(seed)`; ListOps
uses `random.Random(seed)`), so a seed always gives the same data.
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .registry import register_dataset

IGNORE_INDEX = -100
PAD, SEP = 0, 1


@dataclass
class SequenceTask:
    """A generated task: `train`/`test` are TensorDatasets of (x LongTensor (N, L), y LongTensor (N,) or (N, L))."""

    name: str
    train: TensorDataset
    test: TensorDataset
    vocab_size: int
    num_classes: int
    ignore_index: int = IGNORE_INDEX
    per_token: bool = False

    def __repr__(self) -> str:
        return (f"SequenceTask({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"length={self.train.tensors[0].shape[1]}, vocab_size={self.vocab_size}, "
                f"num_classes={self.num_classes}, per_token={self.per_token})")


def _check_length(length: int, minimum: int) -> None:
    if length < minimum:
        raise ValueError(f"length must be >= {minimum} for this task, got {length}")


# --- copy and duplication (per-token) ---------------------------------------------------------------

def make_copy(n: int, length: int, seed: int = 0, num_symbols: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Copy: `x = [w, SEP, 0 ... 0]`, the model must output `w` at the m blanks after the separator.

    `w` is m = (length - 1) // 2 random symbols (ids 2..num_symbols+1, SEP = 1); `y` holds `w` at the
    blanks and IGNORE_INDEX elsewhere. The answer is never in the input at its own position, so the
    task suits bidirectional attention (e.g. Linformer) as well as causal models.
    """
    _check_length(length, 3)
    m = (length - 1) // 2
    w = np.random.default_rng(seed).integers(2, num_symbols + 2, size=(n, m))
    x = np.zeros((n, length), dtype=np.int64)
    x[:, :m], x[:, m] = w, SEP
    y = np.full((n, length), IGNORE_INDEX, dtype=np.int64)
    y[:, m + 1:2 * m + 1] = w
    return x, y


def make_duplication(n: int, length: int, seed: int = 0, num_symbols: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Duplication (Kitaev et al., Reformer, 2020, Sec. 5): sequences `0 w 0 w` for causal language modelling.

    `w` is length/2 - 1 random symbols in 1..num_symbols. The targets are next tokens, scored on the
    second half only: `y[t] = x[t + 1]` for t in [length/2, length - 2] (that is, the repeated `w`),
    IGNORE_INDEX elsewhere. Only a causal model makes this a task: a bidirectional one sees `x[t + 1]`.
    """
    _check_length(length, 4)
    if length % 2:
        raise ValueError(f"duplication needs an even length (0 w 0 w), got {length}")
    h = length // 2
    w = np.random.default_rng(seed).integers(1, num_symbols + 1, size=(n, h - 1))
    x = np.zeros((n, length), dtype=np.int64)
    x[:, 1:h], x[:, h + 1:] = w, w
    y = np.full((n, length), IGNORE_INDEX, dtype=np.int64)
    y[:, h:length - 1] = w
    return x, y


# --- associative recall (classification) ------------------------------------------------------------

def make_associative_recall(n: int, length: int, seed: int = 0, num_keys: int = 16,
                            num_values: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Associative recall (as in H3 and Hyena): key-value pairs, then a query key; the label is its value.

    Each sequence draws its own random map key -> value, so a key that repeats always carries the
    same value; the query is one of the keys shown. Ids: keys 1..num_keys, values
    num_keys+1..num_keys+num_values, pad 0 (one leading pad when the length is even). The label is the
    value's token id, so `num_classes = vocab_size` and a language model's last-position logits can
    be scored directly.
    """
    _check_length(length, 3)
    rng = np.random.default_rng(seed)
    pairs, rows = (length - 1) // 2, np.arange(n)
    mapping = rng.integers(num_values, size=(n, num_keys))
    keys = rng.integers(num_keys, size=(n, pairs))
    query = keys[rows, rng.integers(pairs, size=n)]
    x = np.zeros((n, length), dtype=np.int64)
    start = length - 1 - 2 * pairs
    x[:, start:-1:2] = keys + 1
    x[:, start + 1:-1:2] = np.take_along_axis(mapping, keys, axis=1) + 1 + num_keys
    x[:, -1] = query + 1
    return x, mapping[rows, query] + 1 + num_keys


# --- ListOps (classification) -------------------------------------------------------------------------

LISTOPS_OPS = ("[MAX", "[MIN", "[MED", "[SM")
LISTOPS_VOCAB = ("<pad>", *(str(d) for d in range(10)), *LISTOPS_OPS, "]")
_LISTOPS_ID = {t: i for i, t in enumerate(LISTOPS_VOCAB)}


def _apply(op: str, args: list[int]) -> int:
    if op == "[MAX":
        return max(args)
    if op == "[MIN":
        return min(args)
    if op == "[SM":
        return sum(args) % 10
    s, m = sorted(args), len(args) // 2                                    # [MED: int(np.median) as in LRA
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) // 2


def evaluate_listops(expr: str | Sequence[int] | torch.Tensor) -> int:
    """The value (0-9) of a ListOps expression, given as text (`"[MAX 2 9 [MIN 4 7 ] 0 ]"`) or token ids.

    Operators as in Long Range Arena (Tay et al., 2021; Nangia & Bowman, 2018): MAX, MIN, MED (the
    median, rounded down when it falls between two values) and SM (sum modulo 10). Padding ids (0)
    are skipped. A malformed expression raises `ValueError`.
    """
    if isinstance(expr, str):
        tokens = expr.split()
    else:
        ids = expr.tolist() if isinstance(expr, torch.Tensor) else list(expr)
        if any(not 0 <= i < len(LISTOPS_VOCAB) for i in ids):
            raise ValueError(f"ListOps token ids must be in 0..{len(LISTOPS_VOCAB) - 1}")
        tokens = [LISTOPS_VOCAB[i] for i in ids if i != PAD]
    stack: list[list] = [["<root>"]]                                      # frames: [operator, *arguments]
    for t in tokens:
        if t in LISTOPS_OPS:
            stack.append([t])
        elif t == "]":
            if len(stack) == 1 or len(stack[-1]) == 1:
                closed = "nothing" if len(stack) == 1 else "an operator with no arguments"
                raise ValueError(f"malformed ListOps expression: ']' closes {closed}")
            op, *args = stack.pop()
            stack[-1].append(_apply(op, args))
        elif t.isdigit() and len(t) == 1:
            stack[-1].append(int(t))
        else:
            raise ValueError(f"unknown ListOps token {t!r}; expected a digit, ']' or one of {LISTOPS_OPS}")
    if len(stack) != 1 or len(stack[0]) != 2:
        raise ValueError(f"malformed ListOps expression: {len(stack) - 1} unclosed operators, "
                         f"{len(stack[0]) - 1} top-level values (expected 0 and 1)")
    return stack[0][1]


def _listops_tokens(rng: random.Random, budget: int, depth: int, max_depth: int, max_args: int, out: list[str]):
    """Append to `out` a random expression of at most `budget` tokens (an operator splits it among 2..max_args args)."""
    if budget < 4 or depth >= max_depth:                                  # "[OP a b ]" needs 4 tokens
        out.append(LISTOPS_VOCAB[1 + int(rng.random() * 10)])            # a digit
        return
    k = min(rng.randint(2, max_args), budget - 2)
    cuts = sorted(rng.sample(range(1, budget - 2), k - 1))
    out.append(LISTOPS_OPS[int(rng.random() * len(LISTOPS_OPS))])
    for lo, hi in zip([0, *cuts], [*cuts, budget - 2]):
        _listops_tokens(rng, hi - lo, depth + 1, max_depth, max_args, out)
    out.append("]")


def make_listops(n: int, length: int, seed: int = 0, max_depth: int = 10,
                 max_args: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """ListOps (Long Range Arena): nested MAX/MIN/MED/SM expressions; the label is the value 0-9.

    Each expression is a random tree that fills at most `length` tokens (typically most of them), up
    to `max_depth` levels and `max_args` arguments per operator, padded with 0 at the end. The labels
    are computed by `evaluate_listops`. Ids follow `LISTOPS_VOCAB`. The trees are drawn one scalar at
    a time, so this task uses Python's `random.Random(seed)` (about ten times faster here than a
    numpy Generator); keep `n` modest.
    """
    _check_length(length, 4)
    rng = random.Random(seed)
    x, y = np.zeros((n, length), dtype=np.int64), np.zeros(n, dtype=np.int64)
    for i in range(n):
        tokens: list[str] = []
        _listops_tokens(rng, length, 1, max_depth, max_args, tokens)
        x[i, :len(tokens)] = [_LISTOPS_ID[t] for t in tokens]
        y[i] = evaluate_listops(" ".join(tokens))
    return x, y


# --- retrieval (classification) -----------------------------------------------------------------------

def make_retrieval(n: int, length: int, seed: int = 0, num_symbols: int = 32,
                   motif_len: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A simplified LRA retrieval: do two documents share a planted motif? (label 1) or not (label 0).

    `x = [doc1, SEP, doc2]`, doc1 the first (length - 1) // 2 tokens, random symbols 2..num_symbols+1.
    A motif of `motif_len` random symbols is planted at a random place in each document: the same
    motif in both for label 1, two independent motifs for label 0, so both classes have the same
    token statistics and only comparing the documents tells them apart. Labels are balanced in
    expectation. A chance match of `motif_len` tokens elsewhere has probability about
    (length / 2)^2 / num_symbols^motif_len per pair (4e-6 at the defaults and length 4096). Dual-encoder
    models split `x` at the SEP position.
    """
    _check_length(length, 2 * motif_len + 1)
    h = (length - 1) // 2
    rng = np.random.default_rng(seed)
    x = rng.integers(2, num_symbols + 2, size=(n, length))
    x[:, h] = SEP
    y = rng.integers(2, size=n)
    motif_a = rng.integers(2, num_symbols + 2, size=(n, motif_len))
    motif_b = np.where(y[:, None] == 1, motif_a, rng.integers(2, num_symbols + 2, size=(n, motif_len)))
    rows, offsets = np.arange(n)[:, None], np.arange(motif_len)
    x[rows, rng.integers(h - motif_len + 1, size=(n, 1)) + offsets] = motif_a
    x[rows, h + 1 + rng.integers(length - 1 - h - motif_len + 1, size=(n, 1)) + offsets] = motif_b
    return x, y


# --- the registry of tasks ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Spec:
    make: Callable
    vocab_size: Callable[[dict], int]      # from make's keyword arguments, defaults filled in
    num_classes: int | None                # None: as many as the vocabulary (token-valued targets)
    per_token: bool
    default_n: tuple[int, int]             # (n_train, n_test)


    description: str


TASKS = {
    "copy": _Spec(make_copy, lambda p: p["num_symbols"] + 2, None, True, (2000, 500),
                  "copy the symbols before a separator into the blanks after it (per token)"),
    "duplication": _Spec(make_duplication, lambda p: p["num_symbols"] + 1, None, True, (2000, 500),
                         "Reformer's `0 w 0 w`: predict the second half (causal, per token)"),
    "associative_recall": _Spec(make_associative_recall, lambda p: 1 + p["num_keys"] + p["num_values"], None, False,
                                (2000, 500), "key-value pairs, then a key: recall its value"),
    "listops": _Spec(make_listops, lambda p: len(LISTOPS_VOCAB), 10, False, (500, 100),
                     "Long Range Arena's ListOps: evaluate nested MAX/MIN/MED/SM expressions (10 classes)"),
    "retrieval": _Spec(make_retrieval, lambda p: p["num_symbols"] + 2, 2, False, (2000, 500),
                       "do two documents share a planted motif (2 classes)"),
}


def load_task(name: str, length: int = 256, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
              **task_kw) -> SequenceTask:
    """Generate task `name` as a SequenceTask: n_train + n_test sequences from one seeded draw, split in order.

    `task_kw` goes to `make_<name>` (e.g. `num_symbols`, `max_depth`). Results are cached in memory.
    """
    spec = TASKS[name]
    n_train, n_test = (d if n is None else n for n, d in zip((n_train, n_test), spec.default_n))
    defaults = {k: p.default for k, p in inspect.signature(spec.make).parameters.items()
                if p.default is not inspect.Parameter.empty and k != "seed"}
    unknown = set(task_kw) - set(defaults)
    if unknown:
        raise ValueError(f"{name} takes no option(s) {sorted(unknown)}; it takes "
                         f"{sorted(['length', 'n_train', 'n_test', 'seed', *defaults])}")
    x, y = _generate(spec.make, n_train + n_test, length, seed, tuple(sorted(task_kw.items())))
    vocab_size = spec.vocab_size({**defaults, **task_kw})
    return SequenceTask(name, TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:]),
                        vocab_size, spec.num_classes or vocab_size, IGNORE_INDEX, spec.per_token)


@functools.lru_cache(maxsize=8)
def _generate(make: Callable, n: int, length: int, seed: int, kw: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make(n, length, seed, **dict(kw))
    return torch.from_numpy(x), torch.from_numpy(y)


for _name, _spec in TASKS.items():
    register_dataset(_name, functools.partial(load_task, _name), kind="sequence",
                     description=f"generated, seeded: {_spec.description}")
