"""Distributed data parallelism and expert parallelism, launched by `torchrun`.

    torchrun --nproc_per_node 2 my_script.py      # my_script calls engine.train.train(...)

`torchrun` sets WORLD_SIZE, RANK and LOCAL_RANK (and MASTER_ADDR/PORT); when
WORLD_SIZE > 1, `init_distributed` joins the process group (gloo on CPU, nccl on
CUDA). Every helper here also works in a plain single process, where it is a
no-op, so the training loop calls them unconditionally.

Expert parallelism (GShard, Lepikhin et al. 2020, Sec. 3.2; Switch Transformer, Fedus et al. 2021, Sec. 2.2):
each process holds some of the experts; tokens travel to the process of their expert and back with
`all_to_all` / `all_to_all_reverse`, which exchange variable-sized buckets (the sizes first) and are
differentiable: the gradient of an exchange is the reverse exchange.

    counts = torch.bincount(expert_of_token // experts_per_rank, minlength=world_size())
    received, received_counts = all_to_all(tokens[order], counts)     # tokens sorted by destination
    outputs = all_to_all_reverse(experts(received), received_counts, counts)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

_GROUPS: dict[str, dist.ProcessGroup | None] = {}      # name -> group; None is the world group


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


def world_size(group: dist.ProcessGroup | None = None) -> int:
    """Number of processes in `group` (default: all of them; 1 when not distributed)."""
    return dist.get_world_size(group) if _active() else 1


def rank(group: dist.ProcessGroup | None = None) -> int:
    """This process's rank in `group` (default: its global rank; 0 when not distributed)."""
    return dist.get_rank(group) if _active() else 0


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


def create_group(name: str, ranks: Sequence[int] | None = None) -> dist.ProcessGroup | None:
    """Create the process group `name` of the global `ranks` (default: all) and remember it for `get_group`.

    Every process must call it with the same arguments, members or not (a torch.distributed rule); a group
    of all ranks is still a group of its own (expert exchanges then do not queue behind DDP's all-reduces).
    In a single process the only possible group is rank 0 alone: the result is None, the world group of
    every torch.distributed call.
    """
    if name in _GROUPS:
        raise ValueError(f"process group {name!r} already exists")
    ranks = list(range(world_size())) if ranks is None else sorted(ranks)
    if not ranks or ranks[0] < 0 or ranks[-1] >= world_size() or len(set(ranks)) != len(ranks):
        raise ValueError(f"ranks must be distinct and in 0..{world_size() - 1}, got {ranks}")
    _GROUPS[name] = dist.new_group(ranks) if _active() else None
    return _GROUPS[name]


def get_group(name: str | None = None) -> dist.ProcessGroup | None:
    """The process group made by `create_group(name)`; None (the world group) when `name` is None."""
    if name is None:
        return None
    if name not in _GROUPS:
        raise ValueError(f"no process group {name!r}; created: {sorted(_GROUPS) or 'none'}")
    return _GROUPS[name]


class _Exchange(torch.autograd.Function):
    """all_to_all_single as an autograd function: its backward sends the gradients back the way they came."""

    @staticmethod
    def forward(ctx, x: Tensor, send: list[int], receive: list[int], group) -> Tensor:
        ctx.send, ctx.receive, ctx.group = send, receive, group
        out = x.new_empty((sum(receive), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), output_split_sizes=receive, input_split_sizes=send, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _Exchange.apply(grad, ctx.receive, ctx.send, ctx.group), None, None, None


def _check_counts(tokens: Tensor, counts: Tensor, group) -> None:
    """A ValueError unless `counts` is (W,) or (W, E) integer, non-negative, summing to the tokens."""
    w = world_size(group)
    if counts.dim() not in (1, 2) or counts.shape[0] != w or counts.dtype.is_floating_point:
        raise ValueError(f"counts: expected integer shape ({w},) or ({w}, buckets), got {tuple(counts.shape)} "
                         f"{counts.dtype}")
    if tokens.dim() < 1 or int(counts.sum()) != tokens.shape[0] or bool((counts < 0).any()):
        raise ValueError(f"counts must be >= 0 and sum to the {tokens.shape[0] if tokens.dim() else 0} tokens, "
                         f"got {counts.tolist()}")


def all_to_all(tokens: Tensor, counts: Tensor, group: dist.ProcessGroup | None = None) -> tuple[Tensor, Tensor]:
    """Send variable-sized buckets of tokens to every process of `group` and receive theirs.

    tokens: (N, ...) sorted by destination rank; counts: (W,) how many go to each rank, or (W, E) how many go
    to each of the E buckets (e.g. local experts) of each rank, W = world_size(group). First the counts are
    exchanged (all_to_all_single on the counts), then the tokens (all_to_all_single with those split sizes).
    Returns (received (M, ...) ordered by source rank, then by bucket; received_counts, shape of `counts`,
    [s, e] = tokens from rank s for bucket e). Differentiable; identity in a single process.
    """
    _check_counts(tokens, counts, group)
    if not _active():
        return tokens, counts
    counts = counts.to(tokens.device)                                             # nccl exchanges CUDA tensors
    received_counts = torch.empty_like(counts)                                    # (W,) or (W, E)
    dist.all_to_all_single(received_counts, counts.contiguous(), group=group)
    send = counts.reshape(len(counts), -1).sum(1).tolist()
    receive = received_counts.reshape(len(counts), -1).sum(1).tolist()
    return _Exchange.apply(tokens, send, receive, group), received_counts


def all_to_all_reverse(outputs: Tensor, received_counts: Tensor, counts: Tensor,
                       group: dist.ProcessGroup | None = None) -> Tensor:
    """The inverse of `all_to_all`: send `outputs` (M, ...), one row per received token in the received order,
    back to the processes the tokens came from; returns (N, ...) in the order of the tokens given to
    `all_to_all(tokens, counts)`. Differentiable; identity in a single process."""
    _check_counts(outputs, received_counts, group)
    if not _active():
        return outputs
    send = received_counts.reshape(len(counts), -1).sum(1).tolist()
    receive = counts.reshape(len(counts), -1).sum(1).tolist()
    return _Exchange.apply(outputs, send, receive, group)


def cleanup() -> None:
    """Leave the process group and forget the groups made by `create_group` (no-op when not distributed)."""
    _GROUPS.clear()
    if _active():
        dist.destroy_process_group()
